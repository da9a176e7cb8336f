//! `--plot FILE`: one SVG with the latency distribution (the classic HdrHistogram percentile
//! plot: latency against "nines", so the tail is as wide as the median) and, for fan-out,
//! deliveries per second over time.

use std::path::Path;

use anyhow::anyhow;
use hdrhistogram::Histogram;
use plotters::prelude::*;

/// What to draw.
pub struct Data {
    pub title: String,
    /// Latency in ns.
    pub latency: Histogram<u64>,
    /// (seconds, deliveries per second).
    pub throughput: Vec<(f64, f64)>,
}

/// Nines shown on the percentile axis: up to 99.999 %.
const MAX_NINES: f64 = 5.0;

fn percentile_label(nines: &f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let text = format!("{percent:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Writes the SVG.
pub fn draw(path: &Path, data: &Data) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(if data.throughput.is_empty() { 720 } else { 380 });

    let curve: Vec<(f64, f64)> = (0..=(MAX_NINES as usize * 20))
        .map(|step| step as f64 / 20.0)
        .map(|nines| {
            let quantile = (1.0 - 10f64.powf(-nines)).min(1.0);
            (nines, data.latency.value_at_quantile(quantile) as f64 / 1e6)
        })
        .collect();
    let max_ms = (data.latency.max() as f64 / 1e6).max(0.001) * 1.05;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{}: publish->receive latency", data.title),
            ("sans-serif", 18),
        )
        .margin(12)
        .margin_right(40)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..MAX_NINES, 0f64..max_ms)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(6)
        .x_label_formatter(&percentile_label)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(LineSeries::new(curve, BLUE.stroke_width(2)))
        .map_err(|e| anyhow!("{e}"))?;

    if !data.throughput.is_empty() {
        let end = data.throughput.last().map_or(1.0, |(t, _)| *t).max(0.1);
        let peak = data
            .throughput
            .iter()
            .map(|(_, rate)| *rate)
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&bottom)
            .caption("deliveries per second (100 ms buckets)", ("sans-serif", 18))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..end, 0f64..peak)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("seconds since the first delivery")
            .y_desc("deliveries/s")
            .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(LineSeries::new(
                data.throughput.iter().copied(),
                RED.stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_labels_read_as_percentiles() {
        assert_eq!(percentile_label(&0.0), "0%");
        assert_eq!(percentile_label(&1.0), "90%");
        assert_eq!(percentile_label(&2.0), "99%");
        assert_eq!(percentile_label(&3.0), "99.9%");
    }
}
