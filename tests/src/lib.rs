//! Tarn's integration suite lives in `integration/`; this crate only provides the server binary
//! the suite spawns.
