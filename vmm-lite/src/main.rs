//! The `vmm-lite` binary: flags → [`vmm_lite::VmConfig`] → run → exit status.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
