//! The kernel tiers this machine runs, printed so that a CI log shows what the differential tests
//! (which loop over `Isa::available()`) covered; run with `-- --nocapture` to see the list.

use greenai::kernels::Isa;

/// The CPU flags Linux reports, as an independent account of what the tiers need.
fn cpu_flags() -> Option<Vec<String>> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("flags") || l.starts_with("Features"))?;
    Some(line.split(':').nth(1)?.split_whitespace().map(str::to_owned).collect())
}

#[test]
fn prints_the_tiers_exercised_and_agrees_with_the_cpu_and_the_c_abi() {
    let tiers: Vec<&str> = Isa::available().iter().map(|isa| isa.name()).collect();
    println!("kernel tiers exercised: {}", tiers.join(", "));
    println!("active tier: {} (GREENAI_ISA={:?})", Isa::active(), std::env::var("GREENAI_ISA").ok());
    #[cfg(feature = "capi")]
    {
        // SAFETY: greenai_active_isa returns a static NUL-terminated string.
        let c_name = unsafe { std::ffi::CStr::from_ptr(greenai::ffi::greenai_active_isa()) };
        assert_eq!(c_name.to_str().unwrap(), Isa::active().name());
    }

    let Some(flags) = cpu_flags() else { return };
    let has = |f: &str| flags.iter().any(|g| g == f);
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(Isa::Avx2.is_available(), has("avx2") && has("fma") && has("f16c"));
        let avx512 = ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"].iter().all(|f| has(f));
        assert_eq!(Isa::Avx512.is_available(), avx512 && Isa::Avx2.is_available());
        assert_eq!(Isa::Avx512.has_bf16(), Isa::Avx512.is_available() && has("avx512_bf16"));
    }
    #[cfg(target_arch = "aarch64")]
    {
        assert_eq!(Isa::Dotprod.is_available(), has("asimddp"));
        assert_eq!(Isa::I8mm.is_available(), has("asimddp") && has("i8mm"));
    }
}
