//! Shared pieces of the benchmarks: CPU time, medians, and API Gateway events as Lambda receives them.

use std::time::Duration;

pub mod link;

pub use integration_tests::chunk_event;

/// CPU time (user + system, all threads) this process has used so far.
pub fn cpu_time() -> Duration {
    let (user, system) = cpu_times();
    user + system
}

/// CPU time this process has used so far, in user space and in the kernel (system calls: for the chunk function,
/// mostly copying bytes through its sockets to and from S3).
pub fn cpu_times() -> (Duration, Duration) {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// CPU seconds (user + system) each side of an end-to-end upload has used so far: this process (the client), the
/// local API server, and the emulated S3 and DynamoDB. On a machine of two cores they share, where the time goes
/// says what bounds each mode's throughput.
pub struct CpuMeter {
    server: u32,
    /// Process groups of the emulators, from their pid files (`emulators/up` starts each as a group leader).
    s3: Option<i32>,
    dynamodb: Option<i32>,
}

impl CpuMeter {
    pub fn new(server: u32) -> CpuMeter {
        let group = |name: &str| {
            let dir = std::env::var("EMULATORS_DIR").ok()?;
            std::fs::read_to_string(format!("{dir}/{name}.pid")).ok()?.trim().parse().ok()
        };
        CpuMeter { server, s3: group("localstack"), dynamodb: group("moto") }
    }

    /// Seconds so far: client, API server, S3, DynamoDB (`None` where the process is not known here).
    pub fn sample(&self) -> [Option<f64>; 4] {
        let mut groups = [(self.s3, 0.0), (self.dynamodb, 0.0)];
        let (mut client, mut server) = (None, None);
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Some((pgrp, seconds)) = proc_cpu(pid) else { continue };
            if pid == std::process::id() {
                client = Some(seconds);
            } else if pid == self.server {
                server = Some(seconds);
            }
            for (group, total) in &mut groups {
                if *group == Some(pgrp) {
                    *total += seconds;
                }
            }
        }
        let [(s3, s3_seconds), (dynamodb, dynamodb_seconds)] = groups;
        [client, server, s3.map(|_| s3_seconds), dynamodb.map(|_| dynamodb_seconds)]
    }
}

/// A process's group and its CPU seconds, from `/proc/PID/stat`.
fn proc_cpu(pid: u32) -> Option<(i32, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12), in clock ticks.
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((fields.get(2)?.parse().ok()?, ticks / per_second))
}
