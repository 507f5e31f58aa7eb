//! `ualign dashboard`: the live researcher view (see `tui::dashboard`).

/// Live view for the researcher: f(k) with intervals, certified curves, progress, data quality
#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    report: super::stats::ReportArgs,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let (study, store) = self.report.target.open_existing()?;
        let opts = self.report.analysis.options(&study);
        let db = store.path().to_path_buf();
        drop(store);
        crate::tui::dashboard::run(study, db, opts)
    }
}
