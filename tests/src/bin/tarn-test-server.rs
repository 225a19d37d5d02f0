//! The `tarn` binary, built into this package so the integration tests can spawn it
//! (`CARGO_BIN_EXE_tarn-test-server`) as a real process.
fn main() -> std::process::ExitCode {
    tarn_service::cli::main()
}
