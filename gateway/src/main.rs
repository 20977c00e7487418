//! The `gateway` command: parse the command line, load and check the config, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::{app, config, error_chain, telemetry, tls};

#[derive(Parser)]
#[command(
    version,
    about = "TLS-terminating reverse-proxy frontend for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with the given config.
    Run(ConfigArg),
    /// Validate the config and everything it names, print `ok` or every error.
    Check(ConfigArg),
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The config file.
    #[arg(long, env = "GATEWAY_CONFIG", default_value = config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    tls::install_crypto_provider();
    match cli.command {
        Command::Check(arg) => match app::load(&arg.config) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(errors) => report(&errors),
        },
        Command::Run(arg) => {
            let loaded = match app::load(&arg.config) {
                Ok(loaded) => loaded,
                Err(errors) => return report(&errors),
            };
            if let Err(errors) = app::check_binds(&loaded.config) {
                return report(&errors);
            }
            match app::build(loaded) {
                Ok(server) => server.run_forever(),
                Err(error) => report(&[error]),
            }
        }
    }
}

/// Prints each error with its causes on stderr; exit status 1.
fn report(errors: &[app::LoadError]) -> ExitCode {
    for e in errors {
        eprintln!("error: {}", error_chain(e));
    }
    ExitCode::FAILURE
}
