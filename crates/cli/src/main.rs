//! `twill`: the command-line tool of the Twill ledger. See `twill --help`.

fn main() {
    std::process::exit(twill_cli::main_with_args(std::env::args_os()));
}
