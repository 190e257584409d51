//! `carve-leakcheck snapshot FILE` / `carve-leakcheck compare FILE`: the suite-level leak check run
//! around the whole test suite by scripts/test.sh.

use carve_testkit::Snapshot;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(file)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: carve-leakcheck snapshot|compare FILE");
        std::process::exit(2);
    };
    match cmd.as_str() {
        "snapshot" => {
            let s = serde_json::to_string_pretty(&Snapshot::take()).expect("serialize");
            std::fs::write(file, s).expect("write snapshot");
        }
        "compare" => {
            let before: Snapshot =
                serde_json::from_str(&std::fs::read_to_string(file).expect("read snapshot"))
                    .expect("parse snapshot");
            let d = before.diff(&Snapshot::take());
            if d.is_empty() {
                println!("leakcheck: host unchanged by the suite");
            } else {
                eprintln!("leakcheck: the suite left the host changed:");
                for l in &d {
                    eprintln!("  {l}");
                }
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("usage: carve-leakcheck snapshot|compare FILE");
            std::process::exit(2);
        }
    }
}
