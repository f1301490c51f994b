//! Batch input validation as a command, for `bench/run.sh batch`: the same line checks a batch
//! runs at `validating`, over a file read in 64 KiB chunks (as from storage). Prints the lines,
//! the time taken and the peak RSS of the process.
//!
//!   batch_validate FILE.jsonl
//!   batch_validate --make FILE.jsonl LINES     writes a valid input file of LINES lines

#![allow(clippy::print_stdout, clippy::print_stderr)]

use imagegate::domain::batch_input::{Lines, Validator};
use std::io::{Read, Write};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, path, lines] if flag == "--make" => {
            let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
            for i in 0..lines.parse::<usize>()? {
                writeln!(
                    out,
                    r#"{{"custom_id": "request-{i}", "method": "POST", "url": "/v1/images/generations", "body": {{"model": "nano-banana-pro", "prompt": "a watercolor of lighthouse number {i} at dusk, soft light", "size": "1536x1024", "response_format": "url"}}}}"#
                )?;
            }
            out.flush()?;
            Ok(())
        }
        [path] => {
            let started = std::time::Instant::now();
            let mut file = std::fs::File::open(path)?;
            let mut validator = Validator::new("/v1/images/generations");
            let mut lines = Lines::default();
            let mut valid = 0usize;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                lines.push(&buf[..n], |l| valid += validator.feed(l).is_some_and(|l| l.request.is_ok()) as usize);
            }
            lines.finish(|l| valid += validator.feed(l).is_some_and(|l| l.request.is_ok()) as usize);
            let result = validator.finish();
            let took = started.elapsed();
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: ? kB").to_string();
            match result {
                Ok(lines) => println!(
                    "lines {} valid {} seconds {:.3} {}",
                    lines,
                    valid,
                    took.as_secs_f64(),
                    hwm.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
                ),
                Err(errors) => println!("failed: {} errors, first {:?}", errors.len(), errors.first()),
            }
            Ok(())
        }
        _ => {
            eprintln!("batch_validate FILE.jsonl | batch_validate --make FILE.jsonl LINES");
            std::process::exit(2);
        }
    }
}
