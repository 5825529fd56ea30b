//! The workloads: each a server and its usual load generator, the generator's command line
//! for one load level, and the parser of what it prints.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::server::{APACHE_PORT, Kind, MEMCACHED_PORT, sysbench};

/// One workload of the evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Apache, `ab` fetching a 4 KiB file, with (`-k`) or without keep-alive.
    Ab {
        /// One connection per client for many requests (`ab -k`).
        keepalive: bool,
    },
    /// Apache, `wrk` fetching the same file: a second load generator (two threads where ab
    /// has one), whose latency percentiles come from every request rather than ab's sample.
    Wrk {
        /// Keep-alive connections; without, each request asks `Connection: close` and wrk
        /// connects again.
        keepalive: bool,
    },
    /// MariaDB, sysbench `oltp_read_only` or `oltp_read_write`.
    Oltp {
        /// `oltp_read_write` rather than `oltp_read_only`.
        write: bool,
    },
    /// memcached, memcaslap (90% get, 10% set).
    Memcaslap,
}

/// What one load generator run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Load {
    /// Requests (transactions, operations) per second.
    pub throughput: f64,
    /// Requests (transactions, operations) completed.
    pub requests: u64,
    /// Requests that failed (errors, wrong lengths, non-2xx answers).
    pub failed: u64,
    /// Mean latency, ms.
    pub mean_ms: Option<f64>,
    /// Median latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// Errors the generator retried and counted apart (sysbench's deadlocks).
    pub ignored: u64,
}

/// Every workload, in the report's order.
pub const ALL: [Workload; 7] = [
    Workload::Ab { keepalive: true },
    Workload::Ab { keepalive: false },
    Workload::Wrk { keepalive: true },
    Workload::Wrk { keepalive: false },
    Workload::Oltp { write: false },
    Workload::Oltp { write: true },
    Workload::Memcaslap,
];

/// ab's `-n`: the bound on requests (ab allocates 32 bytes per request up front); its `-t`
/// normally ends the run first.
const AB_MAX_REQUESTS: u64 = 1_000_000;

impl Workload {
    /// The short name used on the command line and in file names.
    pub fn id(self) -> &'static str {
        match self {
            Workload::Ab { keepalive: true } => "apache-k",
            Workload::Ab { keepalive: false } => "apache",
            Workload::Wrk { keepalive: true } => "apache-wrk",
            Workload::Wrk { keepalive: false } => "apache-wrk-close",
            Workload::Oltp { write: false } => "mariadb-ro",
            Workload::Oltp { write: true } => "mariadb-rw",
            Workload::Memcaslap => "memcached",
        }
    }

    /// The workload named `id`.
    pub fn from_id(id: &str) -> Option<Workload> {
        ALL.into_iter().find(|w| w.id() == id)
    }

    /// The server it loads.
    pub fn kind(self) -> Kind {
        match self {
            Workload::Ab { .. } | Workload::Wrk { .. } => Kind::Apache,
            Workload::Oltp { .. } => Kind::Mariadb,
            Workload::Memcaslap => Kind::Memcached,
        }
    }

    /// The load generator's program and the Debian package it comes from.
    pub fn generator(self) -> (&'static str, &'static str) {
        match self {
            Workload::Ab { .. } => ("ab", "apache2-utils"),
            Workload::Wrk { .. } => ("wrk", "wrk"),
            Workload::Oltp { .. } => ("sysbench", "sysbench"),
            Workload::Memcaslap => ("memcaslap", "libmemcached-tools"),
        }
    }

    /// A title for the report.
    pub fn title(self) -> &'static str {
        match self {
            Workload::Ab { keepalive: true } => "Apache, ab -k (keep-alive), 4 KiB file",
            Workload::Ab { keepalive: false } => {
                "Apache, ab (a connection per request), 4 KiB file"
            }
            Workload::Wrk { keepalive: true } => "Apache, wrk (keep-alive), 4 KiB file",
            Workload::Wrk { keepalive: false } => {
                "Apache, wrk (a connection per request), 4 KiB file"
            }
            Workload::Oltp { write: false } => "MariaDB, sysbench oltp_read_only",
            Workload::Oltp { write: true } => "MariaDB, sysbench oltp_read_write",
            Workload::Memcaslap => "memcached, memcaslap (90% get, 10% set)",
        }
    }

    /// What the load level counts.
    pub fn level_name(self) -> &'static str {
        match self {
            Workload::Ab { .. } | Workload::Wrk { .. } => "concurrent requests",
            Workload::Oltp { .. } => "client threads",
            Workload::Memcaslap => "connections",
        }
    }

    /// The throughput's unit.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::Ab { .. } | Workload::Wrk { .. } => "req/s",
            Workload::Oltp { .. } => "tps",
            Workload::Memcaslap => "ops/s",
        }
    }

    /// What one "request" is, for the per-request columns.
    pub fn per(self) -> &'static str {
        match self {
            Workload::Ab { .. } | Workload::Wrk { .. } => "request",
            Workload::Oltp { .. } => "transaction",
            Workload::Memcaslap => "operation",
        }
    }

    /// The generator's command for `level` over `secs` seconds; `scratch` is a path prefix for
    /// the files it writes beside its output.
    pub fn command(self, level: usize, secs: u64, scratch: &Path) -> Command {
        match self {
            Workload::Ab { keepalive } => {
                let mut c = Command::new("ab");
                // -t before -n: -t sets -n to 50,000. -r: a receive error is counted as a
                // failed request instead of ending the run. -s: per-request timeout.
                c.args(["-q", "-r", "-t", &secs.to_string()])
                    .args(["-n", &AB_MAX_REQUESTS.to_string()])
                    .args(["-c", &level.to_string(), "-s", "30"]);
                if keepalive {
                    c.arg("-k");
                }
                c.arg("-e")
                    .arg(scratch.with_extension("csv"))
                    .arg(format!("http://127.0.0.1:{APACHE_PORT}/4k.bin"));
                c
            }
            Workload::Wrk { keepalive } => {
                let mut c = Command::new("wrk");
                // A connection per concurrent request; wrk needs at least as many connections
                // as threads. --timeout like ab's -s: a slow answer is late, not lost.
                c.args(["-t", &level.clamp(1, 2).to_string()])
                    .args(["-c", &level.to_string()])
                    .arg(format!("-d{secs}s"))
                    .args(["--timeout", "30s", "--latency"]);
                if !keepalive {
                    c.args(["-H", "Connection: close"]);
                }
                c.arg(format!("http://127.0.0.1:{APACHE_PORT}/4k.bin"));
                c
            }
            Workload::Oltp { write } => {
                let mut c = sysbench();
                c.arg(format!("--threads={level}"))
                    .arg(format!("--time={secs}"))
                    .args(["--events=100000000", "--percentile=99", "--histogram=on"])
                    .arg(if write {
                        "oltp_read_write"
                    } else {
                        "oltp_read_only"
                    })
                    .arg("run");
                c
            }
            Workload::Memcaslap => {
                let mut c = Command::new("memcaslap");
                // -S: one statistics period over the whole run (latency); the threads must
                // not outnumber the connections.
                c.arg("-s")
                    .arg(format!("127.0.0.1:{MEMCACHED_PORT}"))
                    .args(["-T", &level.clamp(1, 2).to_string()])
                    .args(["-c", &level.to_string()])
                    .arg(format!("-t{secs}s"))
                    .arg(format!("-S{secs}s"));
                c
            }
        }
    }

    /// Parses the generator's output (and its side files under `scratch`).
    pub fn parse(self, output: &str, scratch: &Path) -> Result<Load, String> {
        match self {
            Workload::Ab { .. } => {
                let csv = fs::read_to_string(scratch.with_extension("csv")).unwrap_or_default();
                parse_ab(output, &csv)
            }
            Workload::Wrk { .. } => parse_wrk(output),
            Workload::Oltp { .. } => parse_sysbench(output),
            Workload::Memcaslap => parse_memcaslap(output),
        }
    }
}

/// The first number after `key` on the first line containing it.
fn number_after(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(key))?;
    let rest = &line[line.find(key)? + key.len()..];
    let tok = rest
        .split(|c: char| c.is_whitespace() || c == '(')
        .find(|t| !t.is_empty())?;
    tok.trim_end_matches('s').parse().ok()
}

/// ab's summary, and its `-e` CSV of percentiles ("50,1.234": percent, ms).
pub fn parse_ab(out: &str, csv: &str) -> Result<Load, String> {
    let throughput =
        number_after(out, "Requests per second:").ok_or("ab: no 'Requests per second'")?;
    let requests = number_after(out, "Complete requests:").ok_or("ab: no 'Complete requests'")?;
    let failed = number_after(out, "Failed requests:").unwrap_or(0.0)
        + number_after(out, "Non-2xx responses:").unwrap_or(0.0)
        + number_after(out, "Write errors:").unwrap_or(0.0);
    let pct = |p: &str| {
        csv.lines()
            .find_map(|l| l.strip_prefix(&format!("{p},")))
            .and_then(|v| v.trim().parse().ok())
    };
    Ok(Load {
        throughput,
        requests: requests as u64,
        failed: failed as u64,
        // The first "Time per request" is per request and client (the second divides by the
        // concurrency).
        mean_ms: number_after(out, "Time per request:"),
        p50_ms: pct("50"),
        p99_ms: pct("99"),
        ignored: 0,
    })
}

/// A wrk duration ("812.50us", "1.91ms", "2.00s", "1.50m") in ms.
fn wrk_ms(tok: &str) -> Option<f64> {
    let split = tok.find(|c: char| c.is_ascii_alphabetic())?;
    let (v, unit) = tok.split_at(split);
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(v.parse::<f64>().ok()? * scale)
}

/// wrk's report with `--latency`: "Requests/sec:", "N requests in", the thread statistics'
/// mean latency and the latency distribution's 50% and 99%. Socket errors (connect, read,
/// write, timeout) and non-2xx/3xx answers are failures.
pub fn parse_wrk(out: &str) -> Result<Load, String> {
    let throughput = number_after(out, "Requests/sec:").ok_or("wrk: no 'Requests/sec'")?;
    let requests = out
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse::<u64>().ok())
        .ok_or("wrk: no 'N requests in'")?;
    let socket: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map_or(0, |l| {
            // "connect 0, read 2, write 0, timeout 1"
            l.split(',')
                .filter_map(|e| e.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        });
    let non2xx = number_after(out, "Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
    // The first "Latency" line is the thread statistics' (Avg Stdev Max), before the
    // distribution's header.
    let mean_ms = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Latency "))
        .and_then(|r| wrk_ms(r.split_whitespace().next()?));
    let pct = |p: &str| {
        out.split("Latency Distribution")
            .nth(1)?
            .lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .and_then(|r| wrk_ms(r.trim()))
    };
    Ok(Load {
        throughput,
        requests,
        failed: socket + non2xx,
        mean_ms,
        p50_ms: pct("50%"),
        p99_ms: pct("99%"),
        ignored: 0,
    })
}

/// sysbench's report with `--percentile=99 --histogram=on`: the median comes from the
/// histogram (bucket values in ms, with counts).
pub fn parse_sysbench(out: &str) -> Result<Load, String> {
    if let Some(l) = out.lines().find(|l| l.contains("FATAL")) {
        return Err(format!("sysbench: {}", l.trim()));
    }
    let tx = number_after(out, "transactions:").ok_or("sysbench: no 'transactions'")?;
    let line = out
        .lines()
        .find(|l| l.contains("transactions:"))
        .unwrap_or("");
    let throughput = line
        .split_once('(')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("sysbench: no transaction rate")?;
    let mut hist: Vec<(f64, u64)> = Vec::new();
    for l in out.lines() {
        let Some((value, rest)) = l.split_once('|') else {
            continue;
        };
        let count = rest.trim_start_matches('*').trim();
        if let (Ok(v), Ok(c)) = (value.trim().parse(), count.parse()) {
            hist.push((v, c));
        }
    }
    let total: u64 = hist.iter().map(|h| h.1).sum();
    let p50_ms = (total > 0).then(|| {
        let mut seen = 0;
        hist.iter()
            .find(|(_, c)| {
                seen += c;
                seen * 2 >= total
            })
            .map_or(0.0, |h| h.0)
    });
    Ok(Load {
        throughput,
        requests: tx as u64,
        failed: 0,
        mean_ms: number_after(out, "avg:"),
        p50_ms,
        p99_ms: number_after(out, "99th percentile:"),
        ignored: number_after(out, "ignored errors:").unwrap_or(0.0) as u64,
    })
}

/// memcaslap's report: "Run time: 2.0s Ops: 145385 TPS: 72684 ..." and, with `-S`, the total
/// statistics' mean latency in us. It has no failure counter: lines reporting errors count.
pub fn parse_memcaslap(out: &str) -> Result<Load, String> {
    let run = out
        .lines()
        .find(|l| l.starts_with("Run time:"))
        .ok_or("memcaslap: no 'Run time' line")?;
    let throughput = number_after(run, "TPS:").ok_or("memcaslap: no TPS")?;
    let ops = number_after(run, "Ops:").ok_or("memcaslap: no Ops")?;
    let total = out
        .split("Total Statistics (")
        .nth(1)
        .and_then(|s| number_after(s, "Avg:"));
    let failed = out
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("verify_failed")
                && ["error", "fail", "timeout", "reset", "refused"]
                    .iter()
                    .any(|w| l.contains(w))
        })
        .count();
    Ok(Load {
        throughput,
        requests: ops as u64,
        failed: failed as u64,
        mean_ms: total.map(|us| us / 1000.0),
        p50_ms: None,
        p99_ms: None,
        ignored: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_by_its_id() {
        for w in ALL {
            assert_eq!(Workload::from_id(w.id()), Some(w));
        }
    }

    #[test]
    fn wrk_closes_each_connection_only_without_keepalive() {
        let args = |keepalive| -> Vec<String> {
            Workload::Wrk { keepalive }
                .command(256, 3, Path::new("/tmp/x"))
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let close = |a: &[String]| a.windows(2).any(|w| w == ["-H", "Connection: close"]);
        assert!(close(&args(false)));
        assert!(!close(&args(true)));
    }

    #[test]
    fn ab_summary_and_percentiles() {
        let out = "Concurrency Level:      16\nComplete requests:      20000\n\
            Failed requests:        3\n   (Connect: 0, Receive: 3, Length: 0, Exceptions: 0)\n\
            Requests per second:    12345.67 [#/sec] (mean)\n\
            Time per request:       1.296 [ms] (mean)\n\
            Time per request:       0.081 [ms] (mean, across all concurrent requests)\n";
        let csv = "Percentage served,Time in ms\n0,0.100\n50,1.125\n99,3.500\n100,9.000\n";
        let l = parse_ab(out, csv).unwrap();
        assert_eq!(l.throughput, 12345.67);
        assert_eq!((l.requests, l.failed), (20000, 3));
        assert_eq!(
            (l.mean_ms, l.p50_ms, l.p99_ms),
            (Some(1.296), Some(1.125), Some(3.5))
        );
    }

    /// wrk 4.1.0 (Debian 12) with `--latency`, against a local HTTP server.
    const WRK_OK: &str = "Running 1s test @ http://127.0.0.1:18731/4k.bin
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.91ms    1.99ms  17.88ms   87.17%
    Req/Sec     1.29k   327.21     1.78k    70.00%
  Latency Distribution
     50%    1.14ms
     75%    2.53ms
     90%    4.39ms
     99%    8.61ms
  1283 requests in 1.00s, 5.26MB read
Requests/sec:   1278.70
Transfer/sec:      5.24MB
";

    #[test]
    fn wrk_report() {
        let l = parse_wrk(WRK_OK).unwrap();
        assert_eq!((l.throughput, l.requests, l.failed), (1278.7, 1283, 0));
        assert_eq!(
            (l.mean_ms, l.p50_ms, l.p99_ms),
            (Some(1.91), Some(1.14), Some(8.61))
        );
        assert!(parse_wrk("unable to connect to 127.0.0.1:8080 Connection refused").is_err());
    }

    #[test]
    fn wrk_failures_and_units() {
        // The same report's shape with errors: wrk prints these two lines only when nonzero.
        let out = WRK_OK
            .replace("    Latency     1.91ms", "    Latency   812.50us")
            .replace("     99%    8.61ms", "     99%    2.00s")
            .replace(
                "Requests/sec:",
                "  Socket errors: connect 3, read 2, write 0, timeout 1\n  \
                 Non-2xx or 3xx responses: 4\nRequests/sec:",
            );
        let l = parse_wrk(&out).unwrap();
        assert_eq!(l.failed, 10);
        assert_eq!((l.mean_ms, l.p99_ms), (Some(0.8125), Some(2000.0)));
        assert_eq!(wrk_ms("1.50m"), Some(90_000.0));
        assert_eq!(wrk_ms("12"), None);
    }

    #[test]
    fn sysbench_report_and_histogram() {
        let out = "Latency histogram (values are in milliseconds)\n\
            value  ------------- distribution ------------- count\n\
            1.000 |**                                       2\n\
            2.000 |*****                                    5\n\
            9.000 |*                                        3\n\n\
            SQL statistics:\n    transactions:                        1234   (123.34 per sec.)\n\
            ignored errors:                      2      (0.20 per sec.)\n\
            Latency (ms):\n         min:      1.00\n         avg:      3.50\n\
            max:     40.00\n         99th percentile:      9.00\n";
        let l = parse_sysbench(out).unwrap();
        assert_eq!((l.throughput, l.requests, l.ignored), (123.34, 1234, 2));
        assert_eq!(
            (l.mean_ms, l.p50_ms, l.p99_ms),
            (Some(3.5), Some(2.0), Some(9.0))
        );
        assert!(parse_sysbench("FATAL: unable to connect").is_err());
    }

    #[test]
    fn memcaslap_report() {
        let out = "get_misses: 0\nTotal Statistics (145369 events)\n   Min:        14\n\
            Avg:       219\ncmd_get: 1\nverify_failed: 0\n\
            Run time: 2.0s Ops: 145385 TPS: 72684 Net_rate: 81.3M/s";
        let l = parse_memcaslap(out).unwrap();
        assert_eq!((l.throughput, l.requests, l.failed), (72684.0, 145385, 0));
        assert_eq!(l.mean_ms, Some(0.219));
    }
}
