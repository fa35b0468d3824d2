//! Pictures of a run, written as SVG next to the printed tables (with `plotters`): latency
//! percentile curves (one line per server, the echo floor among them) and fan-out bars (per
//! subscriber count: corestream, the reference server and the write-only floor). `main` calls
//! these once the measurements are in; nothing here measures.

use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Where the pictures go: `target/corestream-bench/` of this checkout.
pub fn output_dir() -> PathBuf {
    crate::root().join("target/corestream-bench")
}

/// The percentiles a curve is sampled at, as "nines" (x = -log10(1 - p)): 0 is p0, 1 is p90, 2
/// is p99, 3 is p99.9, 4 is p99.99.
pub fn nines_grid() -> impl Iterator<Item = f64> {
    (0..=80).map(|step| f64::from(step) * 0.05)
}

/// The quantile (0..1) at `nines`.
pub fn quantile_at(nines: f64) -> f64 {
    1.0 - 10f64.powf(-nines)
}

/// One line of a latency picture: (nines, microseconds) points.
pub struct Curve<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// Percentile curves on a log time axis, the tail to the right.
pub fn latency_svg(path: &Path, title: &str, curves: &[Curve<'_>]) -> Drawn {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let highest = curves
        .iter()
        .flat_map(|curve| curve.points.iter().map(|point| point.1))
        .fold(1.0, f64::max);
    let lowest = curves
        .iter()
        .flat_map(|curve| curve.points.iter().map(|point| point.1))
        .fold(highest, f64::min);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..4f64, ((lowest * 0.8)..(highest * 1.25)).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("µs (log)")
        .x_labels(5)
        .x_label_formatter(&|nines| percentile_label(*nines))
        .draw()?;
    for (index, curve) in curves.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(
                curve.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(curve.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    draw_legend(&mut chart)?;
    root.present()?;
    Ok(())
}

/// The series names, top left, on a light box.
fn draw_legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn percentile_label(nines: f64) -> String {
    let percent = 100.0 * quantile_at(nines);
    match nines.round() as i32 {
        0 => "p0".into(),
        1 => "p90".into(),
        2 => "p99".into(),
        3 => "p99.9".into(),
        4 => "p99.99".into(),
        _ => format!("p{percent:.2}"),
    }
}

/// One group of bars: a subscriber count and one rate per series (None: not measured).
pub struct BarGroup {
    pub subscribers: usize,
    pub rates: Vec<Option<f64>>,
}

/// One panel of a fan-out picture: a transport and its series names.
pub struct Panel<'a> {
    pub title: &'a str,
    pub series: &'a [&'a str],
    pub groups: &'a [BarGroup],
}

/// Deliveries per second as grouped bars on a log axis, one panel per transport.
pub fn fan_out_svg(path: &Path, panels: &[Panel<'_>]) -> Drawn {
    let root = SVGBackend::new(path, (560 * panels.len().max(1) as u32, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(panel, area)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(
    panel: &Panel<'_>,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
) -> Drawn {
    let rates = || {
        panel
            .groups
            .iter()
            .flat_map(|group| group.rates.iter().flatten().copied())
    };
    let highest = rates().fold(1.0, f64::max);
    let lowest = rates().fold(highest, f64::min).max(1.0);
    let floor_of_axis = lowest / 3.0;
    let groups = panel.groups.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            -0.5f64..groups - 0.5,
            (floor_of_axis..highest * 2.0).log_scale(),
        )?;
    let labels: Vec<String> = panel
        .groups
        .iter()
        .map(|group| group.subscribers.to_string())
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("subscribers")
        .y_desc("deliveries/s (log)")
        .x_labels(panel.groups.len())
        .x_label_formatter(&|x| {
            let index = x.round();
            match labels.get(index as usize) {
                Some(label) if (x - index).abs() < 0.01 && index >= 0.0 => label.clone(),
                _ => String::new(),
            }
        })
        .y_label_formatter(&|rate| format!("{:.0e}", rate))
        .draw()?;
    let width = 0.8 / panel.series.len().max(1) as f64;
    for (series, name) in panel.series.iter().enumerate() {
        let color = Palette99::pick(series).to_rgba();
        let bars = panel
            .groups
            .iter()
            .enumerate()
            .filter_map(|(index, group)| {
                let rate = group.rates.get(series).copied().flatten()?;
                let left = index as f64 - 0.4 + series as f64 * width;
                Some(Rectangle::new(
                    [(left, floor_of_axis), (left + width * 0.9, rate)],
                    color.filled(),
                ))
            });
        chart
            .draw_series(bars)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    draw_legend(&mut chart)?;
    Ok(())
}

/// Writes a picture and says where, or why not (a picture is never worth failing a run).
pub fn write(name: &str, draw: impl FnOnce(&Path) -> Drawn) {
    let dir = output_dir();
    let path = dir.join(name);
    let drawn = std::fs::create_dir_all(&dir)
        .map_err(|error| error.into())
        .and_then(|()| draw(&path));
    match drawn {
        Ok(()) => println!("(picture: {})", path.display()),
        Err(error) => println!("(picture {} not written: {error})", path.display()),
    }
}
