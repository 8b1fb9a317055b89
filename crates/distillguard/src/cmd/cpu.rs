//! CPU time of this process, for throughput per CPU-second: on a shared machine wall
//! time says more about the neighbours than about the code.
//!
//! Read from `/proc/self/stat` (the kernel's `utime` and `stime` for all threads, the same
//! figures `getrusage(RUSAGE_SELF)` and `time` report) so that no unsafe FFI is needed.

use std::time::Duration;

/// Clock ticks per second of `/proc` times: `USER_HZ`, 100 on every Linux architecture.
const USER_HZ: u64 = 100;

/// User and system CPU time of every thread of this process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    /// Now; zero where `/proc` is not available (then the rates below are unknown).
    pub fn now() -> Self {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| Self::parse(&stat))
            .unwrap_or_default()
    }

    /// Fields 14 and 15 of `/proc/<pid>/stat`, counted after the parenthesised command name
    /// (which may itself hold spaces).
    fn parse(stat: &str) -> Option<Self> {
        let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
        let ticks = |field: Option<&str>| -> Option<Duration> {
            let ticks: u64 = field?.parse().ok()?;
            Some(Duration::from_millis(ticks * 1_000 / USER_HZ))
        };
        // After the name: state (3) ... utime (14) is the 12th, stime (15) the 13th.
        let user = ticks(fields.nth(11))?;
        let system = ticks(fields.next())?;
        Some(Self { user, system })
    }

    /// CPU time spent since `earlier`, in seconds (user + system).
    pub fn seconds_since(&self, earlier: &CpuTime) -> f64 {
        (self.user + self.system)
            .saturating_sub(earlier.user + earlier.system)
            .as_secs_f64()
    }
}

/// Items per CPU-second, `None` when no CPU time was measured.
pub fn per_cpu_second(items: u64, cpu_seconds: f64) -> Option<f64> {
    (cpu_seconds > 0.0).then(|| items as f64 / cpu_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_time_are_read_after_a_command_name_with_spaces() {
        let stat = "4242 (dg shard) R 1 2 3 4 5 6 7 8 9 10 250 37 0 0 20 0 9 0";
        let cpu = CpuTime::parse(stat).unwrap();
        assert_eq!(cpu.user, Duration::from_millis(2_500));
        assert_eq!(cpu.system, Duration::from_millis(370));
        assert!((cpu.seconds_since(&CpuTime::default()) - 2.87).abs() < 1e-9);
    }

    #[test]
    fn this_process_has_used_some_cpu_time_and_rates_need_some() {
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(CpuTime::now().user > Duration::ZERO);
        assert_eq!(per_cpu_second(10, 0.0), None);
        assert_eq!(per_cpu_second(10, 2.0), Some(5.0));
    }
}
