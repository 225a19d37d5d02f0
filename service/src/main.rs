fn main() -> std::process::ExitCode {
    tarn_service::cli::main()
}
