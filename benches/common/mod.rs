//! Pieces the benches share.

/// Sum of `x` in sixteen lanes (vectorised by the compiler): a read at memory speed, for the
/// memory-floor peers.
pub fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for chunk in x.chunks_exact(16) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum()
}

/// Criterion measurement of the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), for a
/// machine shared with other jobs: time the thread spends descheduled does not count, so a
/// figure reads as throughput per core-second (caches and a sibling hyperthread still feel the
/// load). Falls back to wall time where the clock is not available.
#[allow(dead_code, reason = "used by the benches that opt in")]
pub struct CpuTime;

#[allow(dead_code, reason = "used by the benches that opt in")]
impl CpuTime {
    /// Nanoseconds of CPU time this thread has used.
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn now() -> u64 {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `ts` is a live `struct timespec` of 64-bit Linux (two 64-bit fields) that
        // clock_gettime only writes; the clock id is Linux's, always present.
        let status = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
    }

    /// Nanoseconds of wall time since the first call (no thread clock on this target).
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    fn now() -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
    }
}

impl criterion::measurement::Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        Self::now()
    }
    fn end(&self, start: u64) -> u64 {
        Self::now() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        // Values are nanoseconds, as wall time's are, so its formatter (s, ms, ns; elem/s) fits.
        static WALL: criterion::measurement::WallTime = criterion::measurement::WallTime;
        criterion::measurement::Measurement::formatter(&WALL)
    }
}

/// Bytes of copies of a weight matrix that a bench cycles through so that every call reads from
/// DRAM: four times the last-level cache that sysfs reports (32 MiB on the Zen 4, 480 MiB on the
/// Xeon this project has also run on), and at least 128 MiB.
#[allow(dead_code, reason = "only the benches that stream weights from DRAM call it")]
pub fn dram_bytes() -> usize {
    let llc = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index3/size").ok().and_then(|s| {
        let s = s.trim();
        let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let shift = match unit {
            "K" => 10,
            "M" => 20,
            "" => 0,
            _ => return None,
        };
        digits.parse::<usize>().ok().map(|v| v << shift)
    });
    (4 * llc.unwrap_or(0)).max(128 << 20)
}
