//! C ABI: energy and carbon of a cost (Horowitz 45 nm table, a lower bound) and grid intensities.

use super::boundary::{out_ptr, FfiError};
use super::flops::{greenai_cost, greenai_precision, precision_from_c};
use super::status::greenai_status;
use crate::energy::{Carbon, EnergyMeter, EnergyTable, GridSource, MeterSource, MeterStart};
use crate::Error;

/// Joules of `*cost` with the default energy table (Horowitz, ISSCC 2014, 45 nm: a lower bound); MACs run at
/// `weights` precision, other operations at `activations` precision (`GREENAI_PRECISION_*`).
///
/// # Safety
/// `cost` must point to a valid `greenai_cost`; `joules` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_energy_joules(
    cost: *const greenai_cost,
    weights: greenai_precision,
    activations: greenai_precision,
    joules: *mut f64,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (cost, out) = unsafe { (cost.as_ref().ok_or(FfiError::Null("cost"))?, out_ptr(joules, "joules")?) };
        let e = EnergyTable::default().energy(&(*cost).into(), precision_from_c(weights)?, precision_from_c(activations)?);
        out.write(e.total_j());
        Ok(())
    }
}

/// Grams of CO2 equivalent of `joules`: `kWh x pue x g_per_kwh` (`pue` >= 1, `g_per_kwh` >= 0).
///
/// # Safety
/// `grams` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_energy_co2e_grams(
    joules: f64,
    g_per_kwh: f64,
    pue: f64,
    grams: *mut f64,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointer as documented.
        let out = unsafe { out_ptr(grams, "grams")? };
        if !(joules.is_finite() && joules >= 0.0) {
            return Err(Error::invalid("joules", joules, "must be finite and >= 0").into());
        }
        let c = Carbon { g_per_kwh, pue };
        c.check()?;
        out.write(c.grams(joules));
        Ok(())
    }
}

/// An electricity source, one of the `GREENAI_GRID_*` values.
pub type greenai_grid = u32;
/// World average (475 gCO2e/kWh, CodeCarbon).
pub const GREENAI_GRID_WORLD: greenai_grid = 0;
/// Coal (995).
pub const GREENAI_GRID_COAL: greenai_grid = 1;
/// Oil (816).
pub const GREENAI_GRID_OIL: greenai_grid = 2;
/// Natural gas (743).
pub const GREENAI_GRID_GAS: greenai_grid = 3;
/// Nuclear (29).
pub const GREENAI_GRID_NUCLEAR: greenai_grid = 4;
/// Hydro (26).
pub const GREENAI_GRID_HYDRO: greenai_grid = 5;
/// Solar (48).
pub const GREENAI_GRID_SOLAR: greenai_grid = 6;
/// Wind (26).
pub const GREENAI_GRID_WIND: greenai_grid = 7;

/// Writes the carbon intensity of `source` (gCO2e/kWh, CodeCarbon's table) to `*g_per_kwh`.
///
/// # Safety
/// `g_per_kwh` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_grid_intensity(source: greenai_grid, g_per_kwh: *mut f64) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointer as documented.
        let out = unsafe { out_ptr(g_per_kwh, "g_per_kwh")? };
        let s = GridSource::ALL
            .get(source as usize)
            .ok_or_else(|| Error::invalid("source", source, "not a GREENAI_GRID_* value"))?;
        out.write(s.g_per_kwh());
        Ok(())
    }
}

/// An energy meter (`crate::energy::EnergyMeter`) and the point it started counting; made by
/// `greenai_meter_new`, released by `greenai_meter_free`.
pub struct greenai_meter {
    meter: EnergyMeter,
    start: MeterStart,
}

/// Where a meter's joules come from: `GREENAI_METER_RAPL` (measured) or `GREENAI_METER_ESTIMATE`.
pub type greenai_meter_source = u32;
/// Measured by the RAPL package counters.
pub const GREENAI_METER_RAPL: greenai_meter_source = 0;
/// Estimated: this process's CPU time times a per-core power for the CPU model, plus resident memory.
pub const GREENAI_METER_ESTIMATE: greenai_meter_source = 1;

/// What a meter counted since it started.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct greenai_meter_reading {
    /// Joules, measured or estimated (see `source`).
    pub joules: f64,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
    /// CPU seconds of this process, every thread.
    pub cpu_seconds: f64,
    /// Watts per busy core the estimate used (0 when measured).
    pub watts_per_core: f64,
    /// `GREENAI_METER_RAPL` or `GREENAI_METER_ESTIMATE`.
    pub source: greenai_meter_source,
}

/// Makes a meter and starts it: RAPL where readable, else the labelled estimate. Wrap any calls between
/// this (or `greenai_meter_restart`) and `greenai_meter_read`.
///
/// # Safety
/// `meter` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_meter_new(meter: *mut *mut greenai_meter) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointer as documented.
        let out = unsafe { out_ptr(meter, "meter")? };
        let m = EnergyMeter::new();
        let start = m.start()?;
        out.write(Box::into_raw(Box::new(greenai_meter { meter: m, start })));
        Ok(())
    }
}

/// Starts the meter's count again from now.
///
/// # Safety
/// `meter` must be a live handle from `greenai_meter_new`, not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn greenai_meter_restart(meter: *mut greenai_meter) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees a live, unshared handle.
        let m = unsafe { meter.as_mut().ok_or(FfiError::Null("meter"))? };
        m.start = m.meter.start()?;
        Ok(())
    }
}

/// Writes what the meter counted since it (re)started to `*reading`.
///
/// # Safety
/// `meter` must be a live handle from `greenai_meter_new`; `reading` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_meter_read(
    meter: *const greenai_meter,
    reading: *mut greenai_meter_reading,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (m, out) = unsafe { (meter.as_ref().ok_or(FfiError::Null("meter"))?, out_ptr(reading, "reading")?) };
        let r = m.meter.read(&m.start)?;
        let (source, watts_per_core) = match &r.source {
            MeterSource::Rapl => (GREENAI_METER_RAPL, 0.0),
            MeterSource::Estimate(p) => (GREENAI_METER_ESTIMATE, p.watts_per_core),
        };
        out.write(greenai_meter_reading {
            joules: r.joules,
            wall_seconds: r.wall_seconds,
            cpu_seconds: r.cpu_seconds,
            watts_per_core,
            source,
        });
        Ok(())
    }
}

/// Releases a meter; NULL is accepted.
///
/// # Safety
/// `meter` must be NULL or a live handle from `greenai_meter_new`, released once.
#[no_mangle]
pub unsafe extern "C" fn greenai_meter_free(meter: *mut greenai_meter) {
    if !meter.is_null() {
        // SAFETY: the caller guarantees a live handle made by Box::into_raw, released once.
        drop(unsafe { Box::from_raw(meter) });
    }
}
