//! What the kernel says about a process: resident memory and CPU time, from /proc; and
//! the file-descriptor limit, raised so that ten thousand connections fit.

use std::io;
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{SysconfVar, sysconf};

/// A process to measure: the server under test (by pid) or the load generator itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Proc {
    Pid(u32),
    Me,
}

impl Proc {
    fn dir(self) -> String {
        match self {
            Proc::Pid(p) => format!("/proc/{p}"),
            Proc::Me => "/proc/self".to_owned(),
        }
    }

    /// Resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub(crate) fn rss_kib(self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("{}/status", self.dir()))?;
        parse_vmrss(&status).ok_or_else(|| io::Error::other("no VmRSS in /proc status"))
    }

    /// CPU time of the process: the nanosecond sum of its threads' schedstat where the
    /// kernel has it (the tick-based /proc/PID/stat is 10 ms coarse, as much as a small
    /// run's whole handshake phase), else utime + stime.
    ///
    /// Threads that ended are missing from the schedstat sum; the servers measured keep
    /// their worker threads for their whole life, so a phase's difference is unaffected.
    pub(crate) fn cpu(self) -> io::Result<Duration> {
        match self.schedstat_cpu() {
            Ok(d) => Ok(d),
            Err(_) => self.stat_cpu(),
        }
    }

    fn schedstat_cpu(self) -> io::Result<Duration> {
        let mut ns = 0u64;
        for task in std::fs::read_dir(format!("{}/task", self.dir()))? {
            let text = std::fs::read_to_string(task?.path().join("schedstat"))?;
            ns += parse_schedstat(&text).ok_or_else(|| io::Error::other("malformed schedstat"))?;
        }
        Ok(Duration::from_nanos(ns))
    }

    fn stat_cpu(self) -> io::Result<Duration> {
        let stat = std::fs::read_to_string(format!("{}/stat", self.dir()))?;
        let ticks =
            parse_cpu_ticks(&stat).ok_or_else(|| io::Error::other("malformed /proc stat"))?;
        Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
    }
}

/// Clock ticks per second of /proc/PID/stat (USER_HZ; 100 on every Linux we know of).
fn clock_ticks() -> f64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Nanoseconds on a CPU: the first field of /proc/PID/task/TID/schedstat.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// utime + stime (fields 14 and 15) of /proc/PID/stat. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from its closing parenthesis.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut f = after.split_whitespace();
    // `after` starts at field 3 (state); utime is field 14.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
pub(crate) fn raise_nofile() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_from_status() {
        let status = "Name:\trealtime\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss(status), Some(12345));
        assert_eq!(parse_vmrss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_cpu_ticks_past_a_strange_command_name() {
        let stat =
            "4242 (we ird) name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 3 0 1000 0";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_schedstat() {
        assert_eq!(parse_schedstat("123456789 2000 17\n"), Some(123_456_789));
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn measures_this_process() {
        assert!(Proc::Me.rss_kib().unwrap() > 0);
        let before = Proc::Me.cpu().unwrap();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(Proc::Me.cpu().unwrap() > before);
        assert!(Proc::Me.stat_cpu().is_ok());
        assert!(raise_nofile() > 0);
    }
}
