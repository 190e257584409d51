//! `carve exec NAME -- CMD...`: runs a command inside a container partition.

use carve_engine::state::DEFAULT_ROOT;
use std::io::IsTerminal;

/// Arguments of `carve exec`.
#[derive(clap::Args)]
pub struct Args {
    /// The container partition.
    pub name: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs `carve exec`; exits with the command's status. Without a terminal it goes through the
/// supervisor API when one answers (output captured, then printed); an interactive exec (stdin
/// a terminal) runs the runtime directly, since the API has no terminal to give.
pub fn run(args: Args) -> anyhow::Result<()> {
    let tty = std::io::stdin().is_terminal();
    if !tty {
        if let Some(c) = carve_observe::client::Client::for_partition(
            std::path::Path::new(DEFAULT_ROOT),
            &args.name,
        ) {
            let r = c.exec(&args.name, &args.command)?;
            print!("{}", r.stdout);
            eprint!("{}", r.stderr);
            return match r.exit_code {
                0 => Ok(()),
                code => Err(super::Exit(code.clamp(1, 255) as u8).into()),
            };
        }
    }
    let (_, st, part) = super::running_partition(&args.name)?;
    if part.kind != "container" {
        anyhow::bail!(
            "{} is a {} partition; exec runs in containers",
            part.name,
            part.kind
        );
    }
    let (Some(bin), Some(root)) = (&st.oci_runtime, &st.oci_root) else {
        anyhow::bail!("plan {} has no container runtime recorded", st.plan);
    };
    let rt = carve_engine::oci::OciRuntime {
        binary: bin.clone(),
    };
    let code = rt
        .exec(root, &part.id, &args.command, tty)
        .map_err(anyhow::Error::msg)?;
    if code == 0 {
        Ok(())
    } else {
        Err(super::Exit(code.clamp(1, 255) as u8).into())
    }
}
