//! `twill`: the command-line tool of the Twill ledger. See `twill --help`.

/// mimalloc: the allocator of every Twill process (glibc malloc was over a
/// tenth of a node's CPU under load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    twill_ops::disable_transparent_huge_pages();
    std::process::exit(twill_cli::main_with_args(std::env::args_os()));
}
