//! A small SVG line plot, drawn by hand: axes with ticks, one line per variant with its
//! min - max spread as error bars, a legend. The x axis is logarithmic (base 2: the load
//! levels double), the y axis linear from 0. Shared by `flexsc-bench` and `echo`.

use std::fmt::Write as _;

/// One line: points `(x, median, min, max)`.
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// Sorted by x.
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// A plot.
pub struct Plot {
    /// Drawn above the plot area.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" tick step (1, 2 or 5 times a power of 10) for about `n` ticks up to `max`.
fn step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn fmt_tick(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.2}")
    }
}

/// `plots` one above the other in one SVG document.
pub fn stacked(plots: &[Plot]) -> String {
    let h = H * plots.len() as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    s.push('\n');
    for (i, p) in plots.iter().enumerate() {
        let _ = writeln!(s, r#"<g transform="translate(0,{})">"#, H * i as f64);
        s.push_str(&p.body());
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

impl Plot {
    /// The SVG document.
    pub fn svg(&self) -> String {
        stacked(std::slice::from_ref(self))
    }

    /// The plot's elements, in a `W` x `H` box at the origin.
    fn body(&self) -> String {
        let pts = || self.series.iter().flat_map(|s| s.points.iter());
        let xs: Vec<f64> = {
            let mut v: Vec<f64> = pts().map(|p| p.0).filter(|x| *x > 0.0).collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            v
        };
        let ymax_data = pts().map(|p| p.3.max(p.1)).fold(0.0, f64::max);
        let ystep = step(if ymax_data > 0.0 { ymax_data } else { 1.0 }, 5.0);
        let ymax = (ymax_data / ystep).ceil().max(1.0) * ystep;
        let (lx0, lx1) = match (xs.first(), xs.last()) {
            (Some(a), Some(b)) if a < b => (a.log2(), b.log2()),
            (Some(a), _) => (a.log2() - 1.0, a.log2() + 1.0),
            _ => (0.0, 1.0),
        };
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        // A margin of 4% on each side of the x range, so end markers are not on the axis.
        let px = |x: f64| LEFT + pw * (0.04 + 0.92 * (x.log2() - lx0) / (lx1 - lx0));
        let py = |y: f64| TOP + ph * (1.0 - y / ymax);
        let mut s = String::new();
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
            LEFT + pw / 2.0,
            esc(&self.title)
        );
        // Grid and y ticks.
        let mut y = 0.0;
        while y <= ymax + ystep / 2.0 {
            let yy = py(y);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                yy + 4.0,
                fmt_tick(y)
            );
            y += ystep;
        }
        // x ticks at the measured levels.
        for &x in &xs {
            let xx = px(x);
            let _ = writeln!(
                s,
                r#"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="black"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + ph,
                TOP + ph + 5.0,
                TOP + ph + 19.0,
                fmt_tick(x)
            );
        }
        // Axes and their labels.
        let _ = writeln!(
            s,
            r#"<path d="M{LEFT},{TOP} V{:.1} H{:.1}" fill="none" stroke="black"/>"#,
            TOP + ph,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 14.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            esc(&self.y_label)
        );
        // The lines, with min - max bars, and the legend.
        for (i, ser) in self.series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            let path: Vec<String> = ser
                .points
                .iter()
                .filter(|p| p.0 > 0.0)
                .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1)))
                .collect();
            if path.len() > 1 {
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                    path.join(" ")
                );
            }
            for p in ser.points.iter().filter(|p| p.0 > 0.0) {
                let (xx, y0, y1) = (px(p.0), py(p.2), py(p.3));
                let _ = writeln!(
                    s,
                    r#"<line x1="{xx:.1}" y1="{y0:.1}" x2="{xx:.1}" y2="{y1:.1}" stroke="{c}"/><circle cx="{xx:.1}" cy="{:.1}" r="3.5" fill="{c}"/>"#,
                    py(p.1)
                );
            }
            let ly = TOP + 10.0 + 20.0 * i as f64;
            let lx = LEFT + pw + 15.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
                lx + 22.0,
                lx + 28.0,
                ly + 4.0,
                esc(&ser.label)
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        assert_eq!(step(38_755.0, 5.0), 10_000.0);
        assert_eq!(step(7.0, 5.0), 2.0);
        assert_eq!(step(0.9, 5.0), 0.2);
    }

    #[test]
    fn draws_every_series() {
        let p = Plot {
            title: "a & b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![
                Series {
                    label: "NPTL".into(),
                    points: vec![(1.0, 1.0, 0.5, 1.5), (16.0, 2.0, 2.0, 2.0)],
                },
                Series {
                    label: "flexsc-uring".into(),
                    points: vec![(1.0, 2.0, 2.0, 2.0)],
                },
            ],
        };
        let svg = p.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("a &amp; b"));
        let empty = Plot {
            title: "p99".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: Vec::new(),
        };
        let two = stacked(&[p, empty]);
        assert_eq!(two.matches("<svg").count(), 1);
        assert_eq!(two.matches("<g transform").count(), 2);
        assert!(two.contains(&format!("height=\"{}\"", 2.0 * H)));
    }
}
