//! SVG charts drawn with plotters' SVG backend. No font is needed: the
//! backend writes `<text>` elements and lays them out with estimated sizes,
//! so this works on a machine without any system font.

use std::path::Path;

use anyhow::Context as _;
pub use plotters::prelude::RGBColor;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Colour of our implementation.
pub const OURS: RGBColor = RGBColor(31, 119, 180);
/// Colour of upstream's.
pub const UPSTREAM: RGBColor = RGBColor(230, 110, 0);

/// One implementation's curves (one per round), drawn in one colour.
pub struct Lines<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Colour.
    pub color: RGBColor,
    /// One `(x, y)` series per round.
    pub runs: Vec<&'a [(f64, f64)]>,
}

/// A line chart of `lines` (each round one line, first round labelled).
pub fn curves(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Lines<'_>],
) -> anyhow::Result<()> {
    let points = lines
        .iter()
        .flat_map(|l| l.runs.iter().flat_map(|r| r.iter()));
    let (xmax, ymax) = points.fold((0.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..(xmax * 1.05).max(1.0), 0.0..(ymax * 1.08).max(1.0))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for l in lines {
        for (i, run) in l.runs.iter().enumerate() {
            let style = l.color.stroke_width(2);
            let series = chart.draw_series(LineSeries::new(run.iter().copied(), style))?;
            if i == 0 {
                let color = l.color;
                series.label(l.label).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// A cumulative event curve as steps: flat between events.
pub fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push((p.0, points[i - 1].1));
        }
        out.push(*p);
    }
    out
}

/// Horizontal grouped bars: one row per category, one bar per group.
pub fn bars(
    path: &Path,
    title: &str,
    x_desc: &str,
    categories: &[String],
    groups: &[(&str, RGBColor, Vec<f64>)],
) -> anyhow::Result<()> {
    let rows = categories.len().max(1);
    let xmax = groups
        .iter()
        .flat_map(|g| g.2.iter().copied())
        .fold(0.0f64, f64::max);
    let height = 90 + 34 * rows as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(290)
        .build_cartesian_2d(0.0..(xmax * 1.1).max(0.1), 0.0..rows as f64)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_labels(0)
        .disable_y_mesh()
        .draw()?;
    let width = 0.8 / groups.len().max(1) as f64;
    for (g, (label, color, values)) in groups.iter().enumerate() {
        let color = *color;
        let series = chart.draw_series(values.iter().enumerate().map(|(row, v)| {
            let y0 = (rows - 1 - row) as f64 + 0.1 + width * g as f64;
            Rectangle::new([(0.0, y0), (*v, y0 + width)], color.filled())
        }))?;
        series
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    let style = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (row, name) in categories.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(0.0, (rows - 1 - row) as f64 + 0.5));
        root.draw(&Text::new(name.clone(), (x - 8, y), style.clone()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_charts_without_fonts() {
        let dir = std::env::temp_dir().join(format!("compare-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = [(0.0, 0.0), (1.0, 1.0), (2.5, 2.0)];
        let b = [(0.0, 0.0), (2.0, 1.0), (4.0, 2.0)];
        let line = dir.join("bound.svg");
        curves(
            &line,
            "claims Bound",
            "seconds",
            "claims",
            &[
                Lines {
                    label: "ours",
                    color: OURS,
                    runs: vec![&a[..]],
                },
                Lines {
                    label: "upstream",
                    color: UPSTREAM,
                    runs: vec![&b[..], &a[..]],
                },
            ],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&line).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(
            svg.contains("claims Bound") && svg.contains(">\nupstream\n<"),
            "{svg}"
        );
        assert_eq!(
            svg.matches("stroke-width=\"2\" points=").count(),
            3 + 2,
            "3 runs and 2 legend marks: {svg}"
        );
        let bar = dir.join("requests.svg");
        bars(
            &bar,
            "requests per volume",
            "requests",
            &[
                "create persistentvolumes".into(),
                "patch persistentvolumeclaims".into(),
            ],
            &[
                ("ours", OURS, vec![1.0, 2.0]),
                ("upstream", UPSTREAM, vec![1.0, 0.5]),
            ],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&bar).unwrap();
        assert!(svg.contains("patch persistentvolumeclaims"), "{svg}");
        assert!(svg.contains("fill=\"#1F77B4\""), "ours' colour: {svg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn steps_stay_flat_between_events() {
        assert_eq!(
            steps(&[(0.0, 0.0), (1.0, 1.0), (3.0, 2.0)]),
            vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (3.0, 1.0), (3.0, 2.0)]
        );
    }
}
