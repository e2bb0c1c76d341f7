fn main() -> std::process::ExitCode {
    line::cli::main()
}
