//! Generates the gRPC server and client code from `proto/`, with a vendored
//! `protoc` so that the build needs no manual step, and writes the encoded
//! descriptor set that server reflection serves.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    // SAFETY: build scripts are single-threaded; nothing reads the environment concurrently.
    unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("job_descriptor.bin"))
        .compile_protos(&["proto/job.proto", "proto/events.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
