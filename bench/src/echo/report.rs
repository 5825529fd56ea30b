//! The markdown for `docs/results.md`: per point, medians over the rounds with their spread
//! (min - max), and the flexsc/baseline ratios taken within each round before their median.

use std::fmt::Write as _;

use flexsc_bench::plot::{self, Plot, Series};
use flexsc_bench::summary::{median, spread};

/// One server measured once at one connection count.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub msgs_per_s: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    /// Server CPU time per message over the timed window (every thread of the server process).
    pub server_cpu_ns_per_msg: f64,
    /// Server and load-generator CPU time over the window, per second of it (1.0 = one CPU):
    /// a server below 1.0 while the client is near it is waiting for the client.
    pub server_busy: f64,
    pub client_busy: f64,
}

/// All rounds of one (connections, server) point: `None` where a round produced no numbers.
#[derive(Debug)]
pub struct Point {
    pub conns: usize,
    pub server: &'static str,
    pub rounds: Vec<Option<Sample>>,
    pub failed: u64,
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1000.0)
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

fn col(p: &Point, get: impl Fn(&Sample) -> f64, f: impl Fn(f64) -> String) -> String {
    spread(p.rounds.iter().flatten().map(get).collect(), f)
}

/// The tables: one row per point, then the ratios of each flexsc server to each baseline.
pub fn markdown(points: &[Point]) -> String {
    let mut out = String::new();
    out.push_str(
        "| connections | server | msgs/s | p50 us | p99 us | p99.9 us | server CPU us/msg \
         | server busy | client busy | failed requests |\n",
    );
    out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for p in points {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.conns,
            p.server,
            col(p, |s| s.msgs_per_s, |v| format!("{v:.0}")),
            col(p, |s| s.p50_ns as f64, us),
            col(p, |s| s.p99_ns as f64, us),
            col(p, |s| s.p999_ns as f64, us),
            col(
                p,
                |s| s.server_cpu_ns_per_msg,
                |v| format!("{:.2}", v / 1e3)
            ),
            col(p, |s| s.server_busy, pct),
            col(p, |s| s.client_busy, pct),
            p.failed
        );
    }
    out.push_str(
        "\n| connections | ratio (same round) | msgs/s ratio | p99 ratio | server CPU/msg ratio |\n",
    );
    out.push_str("|---:|---|---:|---:|---:|\n");
    for a in points.iter().filter(|p| p.server.starts_with("flexsc")) {
        for b in points
            .iter()
            .filter(|b| b.conns == a.conns && !b.server.starts_with("flexsc"))
        {
            let pairs: Vec<_> = a
                .rounds
                .iter()
                .zip(&b.rounds)
                .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
                .collect();
            let f = |v: f64| format!("{v:.2}x");
            let tput = spread(
                pairs
                    .iter()
                    .map(|(x, y)| x.msgs_per_s / y.msgs_per_s)
                    .collect(),
                f,
            );
            let p99 = spread(
                pairs
                    .iter()
                    .map(|(x, y)| x.p99_ns as f64 / y.p99_ns.max(1) as f64)
                    .collect(),
                f,
            );
            let cpu = spread(
                pairs
                    .iter()
                    .map(|(x, y)| x.server_cpu_ns_per_msg / y.server_cpu_ns_per_msg.max(1.0))
                    .collect(),
                f,
            );
            let _ = writeln!(
                out,
                "| {} | {} / {} | {} | {} | {} |",
                a.conns, a.server, b.server, tput, p99, cpu
            );
        }
    }
    out
}

/// Two plots in one SVG: msgs/s and p99 latency against the connections, one line per server,
/// medians over the rounds with their min - max.
pub fn svg(points: &[Point]) -> String {
    let mut servers: Vec<&str> = Vec::new();
    for p in points {
        if !servers.contains(&p.server) {
            servers.push(p.server);
        }
    }
    let plot = |what: &str, y: &str, get: &dyn Fn(&Sample) -> f64| Plot {
        title: format!("TCP echo: {what} against connections"),
        x_label: "connections".into(),
        y_label: y.into(),
        series: servers
            .iter()
            .map(|srv| Series {
                label: (*srv).into(),
                points: points
                    .iter()
                    .filter(|p| p.server == *srv)
                    .filter_map(|p| {
                        let (m, lo, hi) = median(p.rounds.iter().flatten().map(get).collect())?;
                        Some((p.conns as f64, m, lo, hi))
                    })
                    .collect(),
            })
            .collect(),
    };
    plot::stacked(&[
        plot("throughput", "msgs/s", &|s| s.msgs_per_s),
        plot("p99 latency", "p99 latency (us)", &|s| {
            s.p99_ns as f64 / 1e3
        }),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_a_line_per_server_in_both_plots() {
        let s = |msgs: f64, p99_us: u64| Sample {
            msgs_per_s: msgs,
            p50_ns: 0,
            p99_ns: p99_us * 1000,
            p999_ns: 0,
            server_cpu_ns_per_msg: 0.0,
            server_busy: 0.0,
            client_busy: 0.0,
        };
        let point = |conns, server, rounds| Point {
            conns,
            server,
            rounds,
            failed: 0,
        };
        let points = [
            point(100, "tokio", vec![Some(s(1e5, 50)), Some(s(2e5, 70))]),
            point(100, "flexsc-uring", vec![Some(s(3e5, 40)), None]),
            point(1000, "tokio", vec![Some(s(1e5, 90))]),
            point(1000, "flexsc-uring", vec![Some(s(2e5, 80))]),
        ];
        let svg = svg(&points);
        // Two servers, two points each, in two plots.
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("<circle").count(), 8);
        assert!(svg.contains("p99 latency (us)") && svg.contains(">flexsc-uring<"));
    }
}
