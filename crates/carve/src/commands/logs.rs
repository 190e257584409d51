//! `carve logs NAME [-f]`: a partition's output (container stdout/stderr).

use carve_engine::state::DEFAULT_ROOT;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

/// Arguments of `carve logs`.
#[derive(clap::Args)]
pub struct Args {
    /// The partition.
    pub name: String,
    /// Keep printing new output until the plan goes down.
    #[arg(short, long)]
    pub follow: bool,
}

/// Runs `carve logs`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(c) =
        carve_observe::client::Client::for_partition(std::path::Path::new(DEFAULT_ROOT), &args.name)
    {
        let mut out = std::io::stdout().lock();
        let r = c.logs(&args.name, args.follow, &mut |d| {
            out.write_all(d).and_then(|_| out.flush()).is_ok()
        });
        match r {
            Ok(()) => return Ok(()),
            // The plan went down while following: the log ended with it.
            Err(carve_observe::client::ClientError::Http(_)) if args.follow => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    let (dir, _, part) = super::running_partition(&args.name)?;
    let mut f = std::fs::File::open(&part.log)
        .map_err(|e| anyhow::anyhow!("{}: {e}", part.log.display()))?;
    let mut out = std::io::stdout().lock();
    let mut pos = 0u64;
    loop {
        f.seek(SeekFrom::Start(pos))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        pos += buf.len() as u64;
        out.write_all(&buf)?;
        out.flush()?;
        if !args.follow || !dir.is_held() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
