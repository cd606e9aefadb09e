//! SVG plots of the scenarios (plotters' SVG backend: text is left to the viewer's fonts, so no
//! font library or system font is needed to draw them).

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;
use troupe_overlay::sim::ScenarioResult;

/// One named line.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// A line chart.
struct Chart<'a> {
    file: &'a str,
    title: &'a str,
    x: &'a str,
    y: &'a str,
    series: Vec<Series>,
    /// Fixed y range, or from the data (from 0).
    y_range: Option<(f64, f64)>,
}

/// Writes every plot into `dir`.
pub fn write_all(dir: &Path, results: &[ScenarioResult]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let per = |f: &dyn Fn(&ScenarioResult) -> Vec<(f64, f64)>| -> Vec<Series> {
        results
            .iter()
            .map(|r| Series { name: r.bench.clone(), points: f(r) })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let charts = [
        Chart {
            file: "connectivity.svg",
            title: "Largest component of the active-view graph",
            x: "seconds after the mass join / failure",
            y: "fraction of live nodes",
            series: per(&|r| {
                r.timeline
                    .iter()
                    .map(|s| (s.t_s, s.connectivity.largest as f64 / s.connectivity.live.max(1) as f64))
                    .collect()
            }),
            y_range: Some((0.0, 1.02)),
        },
        Chart {
            file: "isolated.svg",
            title: "Isolated nodes (empty active view)",
            x: "seconds after the mass join / failure",
            y: "nodes",
            series: per(&|r| r.timeline.iter().map(|s| (s.t_s, s.connectivity.isolated as f64)).collect()),
            y_range: None,
        },
        Chart {
            file: "degree.svg",
            title: "Active-view degree distribution at the end",
            x: "neighbours",
            y: "fraction of live nodes",
            series: per(&|r| {
                let live = r.degree_histogram.iter().sum::<usize>().max(1) as f64;
                r.degree_histogram.iter().enumerate().map(|(d, n)| (d as f64, *n as f64 / live)).collect()
            }),
            y_range: Some((0.0, 1.02)),
        },
        Chart {
            file: "reliability.svg",
            title: "Broadcast reliability (fraction of live nodes delivering)",
            x: "shuffle periods after the event",
            y: "reliability",
            // Without the partition's split periods: half the nodes is the expected reach there
            // (see partition.svg).
            series: per(&|r| {
                r.per_period
                    .iter()
                    .filter(|s| s.side.is_none())
                    .map(|s| (s.period as f64, s.batch.reliability))
                    .collect()
            }),
            y_range: Some((
                results
                    .iter()
                    .flat_map(|r| &r.per_period)
                    .filter(|s| s.side.is_none())
                    .map(|s| s.batch.reliability - 0.01)
                    .fold(0.95, f64::min),
                1.002,
            )),
        },
        Chart {
            file: "redundancy.svg",
            title: "Relative message redundancy",
            x: "shuffle periods after the event",
            y: "payload messages / (deliveries - 1) - 1",
            series: per(&|r| r.per_period.iter().map(|s| (s.period as f64, s.batch.redundancy)).collect()),
            y_range: None,
        },
        Chart {
            file: "last_hop.svg",
            title: "Hop count of the last delivery",
            x: "shuffle periods after the event",
            y: "hops",
            series: per(&|r| r.per_period.iter().map(|s| (s.period as f64, s.batch.last_hop as f64)).collect()),
            y_range: None,
        },
        Chart {
            file: "recovery.svg",
            title: "Recovery after failures: components of the active-view graph",
            x: "shuffle periods after the failure",
            y: "components",
            series: results
                .iter()
                .filter(|r| r.bench.starts_with("fail"))
                .map(|r| Series {
                    name: r.bench.clone(),
                    points: r.per_period.iter().map(|s| (s.period as f64, s.connectivity.components as f64)).collect(),
                })
                .collect(),
            y_range: None,
        },
    ];
    for chart in &charts {
        draw(dir, chart)?;
    }
    for r in results.iter().filter(|r| r.bench == "churn") {
        let periods = r.disturbed_periods.unwrap_or(0);
        let title = format!(
            "Churn: {:.0}% of the nodes replaced per period for {periods} periods, then none",
            r.churn.unwrap_or(0.0) * 100.0
        );
        let series = vec![
            Series {
                name: "reliability (mean of the batch)".into(),
                points: r.per_period.iter().map(|s| (s.period as f64, s.batch.reliability)).collect(),
            },
            Series {
                name: "worst broadcast".into(),
                points: r.per_period.iter().map(|s| (s.period as f64, s.batch.min_reliability)).collect(),
            },
        ];
        let lo = r.per_period.iter().map(|s| s.batch.min_reliability - 0.01).fold(0.95, f64::min);
        draw(
            dir,
            &Chart {
                file: "churn.svg",
                title: &title,
                x: "shuffle periods after the churn started",
                y: "reliability",
                series,
                y_range: Some((lo.max(0.0), 1.002)),
            },
        )?;
    }
    for r in results.iter().filter(|r| r.bench == "partition") {
        let periods = r.disturbed_periods.unwrap_or(0);
        let title = format!("Partition in two halves for {periods} periods, then healed");
        let series = vec![
            Series {
                name: "fraction of the origin's side (split)".into(),
                points: r
                    .per_period
                    .iter()
                    .filter_map(|s| s.side.as_ref().map(|side| (s.period as f64, side.reliability)))
                    .collect(),
            },
            Series {
                name: "fraction of all live nodes".into(),
                points: r.per_period.iter().map(|s| (s.period as f64, s.batch.reliability)).collect(),
            },
        ];
        draw(
            dir,
            &Chart {
                file: "partition.svg",
                title: &title,
                x: "shuffle periods after the split",
                y: "reliability",
                series,
                y_range: Some((0.0, 1.02)),
            },
        )?;
    }
    Ok(())
}

fn draw(dir: &Path, c: &Chart) -> anyhow::Result<()> {
    let path = dir.join(c.file);
    let err = |e: &dyn std::fmt::Display| anyhow!("{}: {e}", path.display());
    let root = SVGBackend::new(&path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let all = c.series.iter().flat_map(|s| s.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0f64, f64::max);
    let (y_lo, y_hi) = c.y_range.unwrap_or_else(|| {
        let m = all.map(|p| p.1).fold(0.0f64, f64::max);
        (0.0, if m <= 0.0 { 1.0 } else { m * 1.1 })
    });
    let mut chart = ChartBuilder::on(&root)
        .caption(c.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..x_max, y_lo..y_hi)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(c.x)
        .y_desc(c.y)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in c.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)).point_size(3))
            .map_err(|e| err(&e))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
    }
    if !c.series.is_empty() {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
