//! `ualign convert`: writes the ONNX graph ualign builds from a GGUF file as a model
//! folder (`model.onnx` with its weights in `model.onnx.data`, `config.json`,
//! `generation_config.json` and the tokenizer files), to inspect it or run it elsewhere.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub(crate) struct Cmd {
    /// The GGUF file, or a model folder holding one
    model: PathBuf,
    /// The folder to write (created; it must not hold a model already)
    #[arg(long)]
    out: PathBuf,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let written = ualign_engine::convert(&self.model, &self.out)
            .with_context(|| format!("converting {} into {}", self.model.display(), self.out.display()))?;
        for n in &written.notices {
            eprintln!("notice: {n}");
        }
        println!("{}: {}", self.out.display(), written.files.join(", "));
        Ok(())
    }
}
