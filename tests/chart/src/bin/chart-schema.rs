//! Writes `charts/csi-sidecars/values.schema.json` from the values struct.
//!
//! ```sh
//! cargo run -p chart --bin chart-schema                 # rewrite the schema
//! cargo run -p chart --bin chart-schema -- --check      # exit 1 if it is stale
//! cargo run -p chart --bin chart-schema -- --vendor-crds  # also write files/snapshot-crds/
//! ```

use anyhow::Context as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chart = chart::chart_dir();
    let path = chart.join(chart::SCHEMA_FILE);
    let want = chart::schema_text();
    for arg in &args {
        if !matches!(arg.as_str(), "--check" | "--vendor-crds") {
            eprintln!("usage: chart-schema [--check] [--vendor-crds]");
            std::process::exit(2);
        }
    }
    if args.iter().any(|a| a == "--check") {
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            eprintln!(
                "{} is stale: run `cargo run -p chart --bin chart-schema`",
                path.display()
            );
            std::process::exit(1);
        }
        println!("{} is up to date", path.display());
    } else {
        std::fs::write(&path, &want).with_context(|| format!("write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if args.iter().any(|a| a == "--vendor-crds") {
        for p in chart::vendor_crds(&chart).await? {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}
