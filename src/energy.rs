//! Energy and carbon: joules from operations and memory traffic, kWh, gCO2e.
