//! The charts of one scenario, drawn next to the report: claims Bound,
//! PVs deleted and RSS over time (every round of both implementations), and
//! API requests per volume by verb and resource (median over rounds).

use std::collections::BTreeMap;
use std::path::Path;

use crate::plot;
use crate::scenarios::{Outcome, Scenario};
use crate::stats;

/// Points of one curve.
type Series = Vec<(f64, f64)>;

/// Draws the charts of scenario `s` next to `out`; returns `(title, file)`.
pub fn draw(
    out: &Path,
    s: Scenario,
    runs: &BTreeMap<&'static str, Vec<Outcome>>,
) -> anyhow::Result<Vec<(String, String)>> {
    let stem = out
        .file_stem()
        .map_or("report".into(), |s| s.to_string_lossy().into_owned());
    let dir = out.parent().unwrap_or(Path::new(""));
    let color = |label: &str| {
        if label == "ours" {
            plot::OURS
        } else {
            plot::UPSTREAM
        }
    };
    let mut plots = Vec::new();
    type Pick = fn(&Outcome) -> &Vec<(f64, f64)>;
    let charts: [(&str, &str, &str, &str, Pick, bool); 3] = [
        (
            "bound",
            "claims Bound after the first was created",
            "seconds",
            "claims Bound",
            |o| &o.bound_curve,
            true,
        ),
        (
            "delete",
            "PVs deleted after the delete-collection",
            "seconds",
            "PVs deleted",
            |o| &o.delete_curve,
            true,
        ),
        (
            "rss",
            "RSS of the sidecar",
            "seconds since the sidecar started",
            "MiB",
            |o| &o.rss,
            false,
        ),
    ];
    for (kind, title, x, y, pick, step) in charts {
        let stepped: Vec<(&str, Vec<Series>)> = runs
            .iter()
            .map(|(label, outs)| {
                let series = outs
                    .iter()
                    .map(pick)
                    .filter(|v| !v.is_empty())
                    .map(|v| if step { plot::steps(v) } else { v.clone() })
                    .collect();
                (*label, series)
            })
            .collect();
        if stepped.iter().all(|(_, v)| v.is_empty()) {
            continue;
        }
        let lines: Vec<plot::Lines<'_>> = stepped
            .iter()
            .map(|(label, v)| plot::Lines {
                label,
                color: color(label),
                runs: v.iter().map(Vec::as_slice).collect(),
            })
            .collect();
        let file = format!("{stem}-{}-{kind}.svg", s.name());
        let title = format!("{}: {title} (every round)", s.name());
        plot::curves(&dir.join(&file), &title, x, y, &lines)?;
        plots.push((title, file));
    }
    let categories: Vec<String> = {
        let mut all: Vec<String> = runs
            .values()
            .flatten()
            .flat_map(|o| o.requests_per_volume.keys().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    };
    if !categories.is_empty() {
        let groups: Vec<(&str, plot::RGBColor, Vec<f64>)> = runs
            .iter()
            .map(|(label, outs)| {
                let values = categories
                    .iter()
                    .map(|c| {
                        let v: Vec<f64> = outs
                            .iter()
                            .map(|o| o.requests_per_volume.get(c).copied().unwrap_or(0.0))
                            .collect();
                        stats::spread(&v).map_or(0.0, |s| s.median)
                    })
                    .collect();
                (*label, color(label), values)
            })
            .collect();
        let file = format!("{stem}-{}-requests.svg", s.name());
        let title = format!("{}: API requests per volume (median over rounds)", s.name());
        plot::bars(
            &dir.join(&file),
            &title,
            "requests per volume",
            &categories,
            &groups,
        )?;
        plots.push((title, file));
    }
    Ok(plots)
}
