//! Test stand-in for the tether binary: `tether-exec-sandbox-helper __sandbox-exec …`
//! runs the in-sandbox helper exactly as `tether __sandbox-exec …` will.

fn main() {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(sub) if sub == tether_exec::SANDBOX_EXEC_SUBCOMMAND => {
            tether_exec::sandbox_exec_main(args)
        }
        _ => {
            eprintln!(
                "usage: tether-exec-sandbox-helper {} [--seccomp-net-off] -- COMMAND [ARGS...]",
                tether_exec::SANDBOX_EXEC_SUBCOMMAND
            );
            std::process::exit(2);
        }
    }
}
