//! What the benches share: sorted latency samples and their quantiles, Markdown tables with fixed
//! column widths (latency tables of n, min, median and p99 among them), the resident memory of a
//! process, and a runtime to run a whole bench on within a time limit.

use std::fmt::{Display, Write as _};
use std::time::Duration;

/// Latency samples, sorted, never empty.
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Sorts `samples`. Panics if there are none.
    pub fn new(mut samples: Vec<Duration>) -> Samples {
        assert!(!samples.is_empty(), "no samples");
        samples.sort();
        Samples(samples)
    }

    /// How many samples there are.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The sample at `quantile` (0.0 is the minimum, 0.5 the median, 1.0 the maximum), the
    /// nearest rank rounded.
    pub fn at(&self, quantile: f64) -> Duration {
        self.0[((self.0.len() - 1) as f64 * quantile).round() as usize]
    }
}

/// A duration in milliseconds to three decimals: `1.234 ms`.
pub fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

/// KiB in MiB to one decimal: `12.3 MiB`.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A Markdown table printed row by row: `N` columns of fixed widths, the first left-aligned, the
/// others right-aligned. A cell wider than its column is printed whole.
pub struct Table<const N: usize> {
    widths: [usize; N],
}

impl<const N: usize> Table<N> {
    /// A table whose columns are `widths` characters wide.
    pub const fn new(widths: [usize; N]) -> Table<N> {
        Table { widths }
    }

    /// Prints the header row `cells` and the separator under it.
    pub fn header(&self, cells: [&dyn Display; N]) {
        self.row(cells);
        let mut line = String::from("|");
        for (column, &width) in self.widths.iter().enumerate() {
            let dashes = if column == 0 {
                "-".repeat(width)
            } else {
                format!("{}:", "-".repeat(width.saturating_sub(1)))
            };
            write!(line, " {dashes} |").unwrap();
        }
        println!("{line}");
    }

    /// Prints one row of `cells`.
    pub fn row(&self, cells: [&dyn Display; N]) {
        let mut line = String::from("|");
        for (column, (cell, &width)) in cells.iter().zip(&self.widths).enumerate() {
            let cell = cell.to_string();
            if column == 0 {
                write!(line, " {cell:<width$} |").unwrap();
            } else {
                write!(line, " {cell:>width$} |").unwrap();
            }
        }
        println!("{line}");
    }
}

/// A [`Table`] of latencies: name, n, min, median and p99 in ms.
pub struct LatencyTable(Table<5>);

impl LatencyTable {
    /// A table whose name column is `name_width` characters wide and each latency column
    /// `value_width`.
    pub const fn new(name_width: usize, value_width: usize) -> LatencyTable {
        LatencyTable(Table::new([
            name_width,
            5,
            value_width,
            value_width,
            value_width,
        ]))
    }

    /// Prints the header row, `title` over the names, and the separator under it.
    pub fn header(&self, title: &str) {
        self.0.header([&title, &"n", &"min", &"median", &"p99"]);
    }

    /// Prints the row of `samples` under `name` and returns their median. Panics if there are no
    /// samples.
    pub fn row(&self, name: &str, samples: Vec<Duration>) -> Duration {
        let samples = Samples::new(samples);
        self.0.row([
            &name,
            &samples.count(),
            &ms(samples.at(0.0)),
            &ms(samples.at(0.5)),
            &ms(samples.at(0.99)),
        ]);
        samples.at(0.5)
    }
}

/// The resident memory (VmRSS) of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// A memory field of `/proc/PID/status` (`VmRSS`, `VmHWM`, …) in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Waits 300 ms, for a process's memory to settle before it is read.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Runs `bench` to the end on a new multi-threaded runtime. Panics if it takes longer than
/// `limit`.
pub fn run_within(limit: Duration, bench: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(limit, bench)
            .await
            .unwrap_or_else(|_| panic!("the bench took longer than {limit:?}"))
    });
}
