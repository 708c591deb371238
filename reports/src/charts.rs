//! Chart drawing with plotters into SVG strings (no fonts are loaded: the browser renders the
//! text), so every report is one self-contained file.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ReportError;

const W: u32 = 900;
const H: u32 = 300;
const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// A named line.
pub struct Series2 {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

impl Series2 {
    pub fn new(name: &str, points: Vec<(f64, f64)>, color: usize) -> Self {
        Self {
            name: name.into(),
            points,
            color: PALETTE[color % PALETTE.len()],
        }
    }
}

fn draw_err<E: std::fmt::Debug>(e: E) -> ReportError {
    ReportError::Draw(format!("{e:?}"))
}

fn clock(h: &f64) -> String {
    let mins = (h * 60.0).round() as i64;
    format!("{:02}:{:02}", mins / 60 % 24, mins % 60)
}

fn range(points: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = points.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo, lo + 1.0)
    } else {
        (0.0, 1.0)
    }
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The frame every x/y chart shares: white background, caption, axes with descriptions and a
/// light grid (x labelled as HH:MM when `clock_x`); `draw` adds the series, then the legend is
/// drawn at `legend` if given.
#[allow(clippy::too_many_arguments)]
fn framed(
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_desc: &str,
    y_desc: &str,
    clock_x: bool,
    legend: Option<SeriesLabelPosition>,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), ReportError>,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x, y)
            .map_err(draw_err)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(x_desc)
            .y_desc(y_desc)
            .light_line_style(RGBColor(235, 235, 235));
        if clock_x {
            mesh.x_label_formatter(&clock);
        }
        mesh.draw().map_err(draw_err)?;
        draw(&mut chart)?;
        if let Some(position) = legend {
            chart
                .configure_series_labels()
                .position(position)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .draw()
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// One line with its legend entry.
fn legend_line<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: impl IntoIterator<Item = (f64, f64)>,
    name: &str,
    color: RGBColor,
    width: u32,
) -> Result<(), ReportError> {
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(width)))
        .map_err(draw_err)?
        .label(name)
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(width))
        });
    Ok(())
}

/// Lines over a shared x axis; `clock_x` labels x (hours) as HH:MM.
pub fn lines(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series2],
    clock_x: bool,
) -> Result<String, ReportError> {
    let (x0, x1) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let (_, y1) = range(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain([0.0]),
    );
    framed(
        title,
        x0..x1,
        0.0..y1 * 1.08,
        x_desc,
        y_desc,
        clock_x,
        Some(SeriesLabelPosition::UpperRight),
        |chart| {
            for s in series {
                legend_line(chart, s.points.iter().copied(), &s.name, s.color, 2)?;
            }
            Ok(())
        },
    )
}

/// An empirical CDF (x, share ≤ x) with an optional vertical target line and a horizontal
/// line at `quantile`.
pub fn cdf(
    title: &str,
    x_desc: &str,
    points: &[(f64, f64)],
    target: Option<f64>,
    quantile: f64,
) -> Result<String, ReportError> {
    let (_, x1) = range(points.iter().map(|p| p.0).chain(target).chain([0.0]));
    let x1 = x1 * 1.05;
    framed(
        title,
        0.0..x1,
        0.0..1.0,
        x_desc,
        "share of orders",
        false,
        Some(SeriesLabelPosition::LowerRight),
        |chart| {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    PALETTE[0].stroke_width(2),
                ))
                .map_err(draw_err)?
                .label("delivered within x minutes")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], PALETTE[0].stroke_width(2))
                });
            if let Some(t) = target {
                chart
                    .draw_series(LineSeries::new(
                        [(0.0, quantile), (x1, quantile)],
                        RGBColor(170, 170, 170).stroke_width(1),
                    ))
                    .map_err(draw_err)?;
                chart
                    .draw_series(LineSeries::new(
                        [(t, 0.0), (t, 1.0)],
                        PALETTE[1].stroke_width(2),
                    ))
                    .map_err(draw_err)?
                    .label(format!("SLO: p{:.0} within {t} min", quantile * 100.0))
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], PALETTE[1].stroke_width(2))
                    });
            }
            Ok(())
        },
    )
}

/// A histogram of `values` in `bins` equal bins.
pub fn histogram(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    values: &[f64],
    bins: usize,
) -> Result<String, ReportError> {
    let (lo, hi) = range(values.iter().copied().chain([0.0]));
    let width = (hi - lo) / bins.max(1) as f64;
    let mut counts = vec![0u64; bins.max(1)];
    for v in values {
        let i = (((v - lo) / width) as usize).min(counts.len() - 1);
        counts[i] += 1;
    }
    let ymax = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    framed(
        title,
        lo..hi,
        0.0..ymax * 1.08,
        x_desc,
        y_desc,
        false,
        None,
        |chart| {
            chart
                .draw_series(counts.iter().enumerate().map(|(i, c)| {
                    let x = lo + i as f64 * width;
                    Rectangle::new(
                        [(x, 0.0), (x + width, *c as f64)],
                        PALETTE[0].mix(0.8).filled(),
                    )
                }))
                .map_err(draw_err)?;
            Ok(())
        },
    )
}

/// Horizontal bars, first row on top, each labelled with its name and value beside the bar
/// (`max` fixes the axis end, e.g. 1.0 for rates).
pub fn bars(
    title: &str,
    x_desc: &str,
    rows: &[(String, f64)],
    max: Option<f64>,
) -> Result<String, ReportError> {
    let n = rows.len().max(1);
    let height = (70 + 20 * n as u32).max(H);
    let data_max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    // Room on the right for the labels.
    let xmax = max.unwrap_or(data_max).max(1e-9) * 1.45;
    let is_rate = max == Some(1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(10)
            .build_cartesian_2d(0.0..xmax, 0.0..n as f64)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_labels(0)
            .disable_y_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(draw_err)?;
        let row_y = |i: usize| (n - 1 - i) as f64;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, v))| {
                let y = row_y(i);
                Rectangle::new(
                    [(0.0, y + 0.15), (*v, y + 0.85)],
                    PALETTE[0].mix(0.8).filled(),
                )
            }))
            .map_err(draw_err)?;
        let style =
            TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (label, v))| {
                let value = if is_rate {
                    format!("{v:.3}")
                } else {
                    format!("{v:.0}")
                };
                Text::new(
                    format!("{label}  {value}"),
                    (v + xmax * 0.01, row_y(i) + 0.5),
                    style.clone(),
                )
            }))
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Stated quantile level against observed coverage, one marked line per model, with the
/// diagonal a calibrated model sits on.
pub fn calibration(title: &str, series: &[Series2]) -> Result<String, ReportError> {
    framed(
        title,
        0.4..1.0,
        0.0..1.0,
        "stated quantile",
        "share of orders delivered by it",
        false,
        Some(SeriesLabelPosition::LowerRight),
        |chart| {
            let grey = RGBColor(170, 170, 170);
            legend_line(
                chart,
                [(0.4, 0.4), (1.0, 1.0)],
                "perfect calibration",
                grey,
                1,
            )?;
            for s in series {
                let color = s.color;
                legend_line(chart, s.points.iter().copied(), &s.name, color, 2)?;
                chart
                    .draw_series(s.points.iter().map(|p| Circle::new(*p, 4, color.filled())))
                    .map_err(draw_err)?;
            }
            Ok(())
        },
    )
}

/// A metric against a varied parameter: the mean per value, its confidence band (shaded), the
/// SLO as a horizontal line, and the recommended value as a vertical line when there is one.
/// `rows` are (x, mean, lo, hi), in x order.
pub fn band(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    rows: &[(f64, f64, f64, f64)],
    slo: f64,
    mark: Option<f64>,
) -> Result<String, ReportError> {
    let (x0, x1) = range(rows.iter().map(|r| r.0));
    let (_, y1) = range(rows.iter().map(|r| r.3).chain([slo, 0.0]));
    // A little room either side, so a recommended value at the end of the grid stays visible.
    let pad = (x1 - x0) * 0.04;
    let (x0, x1) = (x0 - pad, x1 + pad);
    framed(
        title,
        x0..x1,
        0.0..y1 * 1.1,
        x_desc,
        y_desc,
        false,
        Some(SeriesLabelPosition::UpperRight),
        |chart| {
            let mut outline: Vec<(f64, f64)> = rows.iter().map(|r| (r.0, r.3)).collect();
            outline.extend(rows.iter().rev().map(|r| (r.0, r.2)));
            let fill = PALETTE[0].mix(0.2);
            chart
                .draw_series([Polygon::new(outline, fill.filled())])
                .map_err(draw_err)?
                .label("95% confidence band")
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], fill.filled()));
            legend_line(
                chart,
                rows.iter().map(|r| (r.0, r.1)),
                "mean",
                PALETTE[0],
                2,
            )?;
            chart
                .draw_series(
                    rows.iter()
                        .map(|r| Circle::new((r.0, r.1), 3, PALETTE[0].filled())),
                )
                .map_err(draw_err)?;
            legend_line(chart, [(x0, slo), (x1, slo)], "SLO", PALETTE[1], 2)?;
            if let Some(x) = mark {
                legend_line(
                    chart,
                    [(x, 0.0), (x, y1 * 1.1)],
                    &format!("recommended {x}"),
                    PALETTE[3],
                    3,
                )?;
            }
            Ok(())
        },
    )
}
