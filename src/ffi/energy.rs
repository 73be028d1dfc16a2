//! C ABI: energy and carbon of a cost (Horowitz 45 nm table, a lower bound) and grid intensities.

use super::boundary::{out_ptr, FfiError};
use super::flops::{greenai_cost, greenai_precision, precision_from_c};
use super::status::greenai_status;
use crate::energy::{Carbon, EnergyTable, GridSource};
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
