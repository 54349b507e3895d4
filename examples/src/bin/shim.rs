//! The `shim` example as a binary, so that `cargo xtask lab -- shim
//! --backend kvm` (which builds workspace binaries statically) can run it
//! in the nested lab. The program is `examples/examples/shim.rs`.

#[path = "../../examples/shim.rs"]
mod shim;

fn main() -> std::process::ExitCode {
    shim::main()
}
