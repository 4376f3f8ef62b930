//! The two kinds of chart the report draws, with plotters into SVG: bars
//! (one group per category, one bar per lab, a min–max whisker over the
//! runs) and lines (one per lab and measure), on linear or logarithmic
//! axes with round ticks. What to draw is [`super::plots`]' business.

use std::error::Error;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::results::Stat;

/// What drawing returns: plotters' errors are of many types.
pub type PlotResult<T = ()> = Result<T, Box<dyn Error>>;

/// Width and height of a plot, pixels.
pub const SIZE: (u32, u32) = (820, 440);

/// An axis drawn linear or logarithmic (log: values are plotted as log10).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Axis {
    /// Values as they are.
    Linear,
    /// Values as log10: for values that span orders of magnitude.
    Log,
}

impl Axis {
    fn to(self, v: f64) -> f64 {
        match self {
            Axis::Linear => v,
            Axis::Log => v.max(1e-9).log10(),
        }
    }

    fn from(self, v: f64) -> f64 {
        match self {
            Axis::Linear => v,
            Axis::Log => 10f64.powf(v),
        }
    }

    /// A range covering `lo..=hi` (in data units), padded.
    fn range(self, lo: f64, hi: f64, from_zero: bool) -> (f64, f64) {
        match self {
            Axis::Linear => {
                let lo = if from_zero { 0.0_f64.min(lo) } else { lo };
                let span = (hi - lo).max(hi.abs() * 0.1).max(1e-9);
                (if from_zero { lo } else { lo - span * 0.05 }, hi + span * 0.12)
            }
            Axis::Log => {
                let (a, b) = (self.to(lo), self.to(hi));
                let pad = ((b - a) * 0.1).max(0.15);
                (a - pad, b + pad)
            }
        }
    }
}

/// Round values (1, 2, 5 × 10^k; only 10^k when those are too many) in
/// `lo..=hi`, for a logarithmic axis.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = (lo.max(1e-9), hi.max(1e-9));
    let mut ticks = Vec::new();
    for k in (lo.log10().floor() as i32 - 1)..=(hi.log10().ceil() as i32) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(k);
            if v >= lo && v <= hi {
                ticks.push(v);
            }
        }
    }
    if ticks.len() > 12 {
        ticks.retain(|v| (v.log10() - v.log10().round()).abs() < 1e-9);
    }
    ticks
}

/// Draws `ticks` (data units) as labelled light lines across a chart whose
/// own labels on that axis are turned off.
fn draw_ticks(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    ticks: &[f64],
    axis: Axis,
    horizontal: bool,
    fmt: fn(f64) -> String,
) -> PlotResult {
    let (x0, x1) = (chart.x_range().start, chart.x_range().end);
    let (y0, y1) = (chart.y_range().start, chart.y_range().end);
    let grid = RGBColor(200, 200, 200);
    for &t in ticks {
        let v = axis.to(t);
        let (line, anchor, pos) = if horizontal {
            (vec![(x0, v), (x1, v)], (x0, v), Pos::new(HPos::Right, VPos::Center))
        } else {
            (vec![(v, y0), (v, y1)], (v, y0), Pos::new(HPos::Center, VPos::Top))
        };
        chart.draw_series(std::iter::once(PathElement::new(line, grid.stroke_width(1))))?;
        // The chart's coordinates are the backend's; `root` may be one
        // panel of a split drawing, which draws relative to its own corner.
        let (px, py) = chart.backend_coord(&anchor);
        let (bx, by) = root.get_base_pixel();
        let (px, py) = (px - bx, py - by);
        let at = if horizontal { (px - 6, py) } else { (px, py + 8) };
        root.draw(&Text::new(fmt(t), at, TextStyle::from(("sans-serif", 13).into_font()).pos(pos)))?;
    }
    Ok(())
}

pub fn no_data(path: &Path, title: &str) -> PlotResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let style = TextStyle::from(("sans-serif", 18).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new(format!("{title}: no data in this run"), (SIZE.0 as i32 / 2, SIZE.1 as i32 / 2), style))?;
    root.present()?;
    Ok(())
}

/// One bar per (category, series): the mean, with a min–max whisker.
#[derive(Debug)]
pub struct Bars {
    pub title: String,
    pub y_desc: String,
    pub categories: Vec<String>,
    /// (lab, colour, one value per category).
    pub series: Vec<(String, RGBColor, Vec<Option<Stat>>)>,
    pub y: Axis,
    pub fmt: fn(f64) -> String,
}

pub fn bar_chart(path: &Path, b: &Bars) -> PlotResult {
    let values: Vec<&Stat> = b.series.iter().flat_map(|s| s.2.iter().flatten()).collect();
    if values.is_empty() || b.categories.is_empty() {
        return no_data(path, &b.title);
    }
    let hi = values.iter().map(|s| s.max.max(s.mean)).fold(f64::MIN, f64::max);
    let lo = values.iter().map(|s| s.min.min(s.mean)).fold(f64::MAX, f64::min);
    let lo = if b.y == Axis::Log { lo.max(hi * 1e-6).max(1e-9) } else { lo };
    let (y0, y1) = b.y.range(lo, hi, true);
    let n = b.categories.len();
    // Room for the category labels under the bars.
    let size = (SIZE.0.max(100 * n as u32), SIZE.1);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&b.title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(86)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)?;
    let (axis, fmt) = (b.y, b.fmt);
    let y_fmt = move |v: &f64| if axis == Axis::Log { String::new() } else { fmt(axis.from(*v)) };
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh().x_labels(0).y_label_formatter(&y_fmt).y_desc(b.y_desc.as_str()).label_style(("sans-serif", 13));
    if b.y == Axis::Log {
        mesh.disable_y_mesh().y_labels(0);
    }
    mesh.draw()?;
    if b.y == Axis::Log {
        draw_ticks(&mut chart, &root, &log_ticks(b.y.from(y0), b.y.from(y1)), b.y, true, b.fmt)?;
    }
    let k = b.series.len().max(1);
    let width = 0.8 / k as f64;
    for (i, (name, colour, stats)) in b.series.iter().enumerate() {
        let colour = *colour;
        let rects = stats.iter().enumerate().filter_map(|(c, s)| {
            let s = s.as_ref()?;
            let x0 = c as f64 - 0.4 + i as f64 * width;
            Some(Rectangle::new([(x0 + width * 0.08, y0), (x0 + width * 0.92, b.y.to(s.mean))], colour.filled()))
        });
        chart
            .draw_series(rects)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        let whiskers = stats.iter().enumerate().filter_map(|(c, s)| {
            let s = s.as_ref().filter(|s| s.values.len() > 1)?;
            let x = c as f64 - 0.4 + (i as f64 + 0.5) * width;
            Some(PathElement::new(vec![(x, b.y.to(s.min)), (x, b.y.to(s.max))], BLACK.stroke_width(1)))
        });
        chart.draw_series(whiskers)?;
    }
    let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, category) in b.categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, y0));
        root.draw(&Text::new(category.clone(), (px, py + 8), style.clone()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}

/// One line of a line chart.
#[derive(Debug)]
pub struct Line {
    pub name: String,
    pub colour: RGBColor,
    pub width: u32,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

#[allow(clippy::too_many_arguments)]
pub fn line_chart(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
    (x_axis, y_axis): (Axis, Axis),
    x_fmt: fn(f64) -> String,
    y_fmt: fn(f64) -> String,
) -> PlotResult {
    let points: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.points.iter().copied()).collect();
    let (xl, xh) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (yl, yh) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (x0, x1) = if x_axis == Axis::Log {
        x_axis.range(xl, xh, false)
    } else {
        (xl.min(0.0), xh + ((xh - xl.min(0.0)) * 0.03).max(0.1))
    };
    let (y0, y1) = y_axis.range(yl.min(if y_axis == Axis::Linear { 0.0 } else { yl }), yh, y_axis == Axis::Linear);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(86)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    // Logarithmic axes get round ticks drawn here; linear ones plotters' own.
    let xf = move |v: &f64| if x_axis == Axis::Log { String::new() } else { x_fmt(x_axis.from(*v)) };
    let yf = move |v: &f64| if y_axis == Axis::Log { String::new() } else { y_fmt(y_axis.from(*v)) };
    let mut mesh = chart.configure_mesh();
    mesh.x_label_formatter(&xf).y_label_formatter(&yf).x_desc(x_desc).y_desc(y_desc).label_style(("sans-serif", 13));
    if x_axis == Axis::Log {
        mesh.disable_x_mesh().x_labels(0);
    }
    if y_axis == Axis::Log {
        mesh.disable_y_mesh().y_labels(0);
    }
    mesh.draw()?;
    if x_axis == Axis::Log {
        // The sizes measured are the ticks.
        let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        draw_ticks(&mut chart, area, &xs, x_axis, false, x_fmt)?;
    }
    if y_axis == Axis::Log {
        draw_ticks(&mut chart, area, &log_ticks(y_axis.from(y0), y_axis.from(y1)), y_axis, true, y_fmt)?;
    }
    for line in lines {
        let colour = line.colour;
        let pts: Vec<(f64, f64)> = line.points.iter().map(|&(x, y)| (x_axis.to(x), y_axis.to(y))).collect();
        let style = colour.stroke_width(line.width);
        let anno = if line.dashed {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), style))?
        };
        let dashed = line.dashed;
        anno.label(line.name.as_str()).legend(move |(x, y)| {
            let style = colour.stroke_width(if dashed { 1 } else { 2 });
            PathElement::new(vec![(x, y), (x + 18, y)], style)
        });
        if pts.len() <= 12 {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, if line.dashed { colour.stroke_width(1) } else { colour.filled() })))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

