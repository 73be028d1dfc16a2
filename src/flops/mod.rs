//! FLOPs, parameters and bytes moved, per layer and per model.
