fn main() -> std::process::ExitCode {
    tailprobe::cli::main()
}
