//! `sovereign federation publish`: what a site must publish for the others to trust it, as a
//! federation-file stanza (its region, public URL, federation public key and TLS CA). The
//! operator gathers every site's stanza into one file and gives it to each site
//! (`sovereign serve --federation FILE`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sovereign_model::RegionId;

#[derive(clap::Subcommand)]
pub enum FederationCommand {
    /// Print this site's stanza, creating its federation key and (unless --ca is given) its
    /// local CA and a TLS certificate naming the URL's host, if they do not exist yet.
    Publish {
        /// The site's own data directory (as given to `sovereign serve --region`).
        #[arg(long, value_name = "DIR", default_value = "./sovereign-data")]
        data_dir: PathBuf,
        #[arg(long, value_name = "ID")]
        region: String,
        /// Where other sites and phones reach this site, https://host[:port].
        #[arg(long, value_name = "URL")]
        url: String,
        /// The CA certificate (PEM) that signs the certificate given to `serve --tls-cert`,
        /// published instead of the site's local CA.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
    },
}

pub fn run(command: FederationCommand) -> anyhow::Result<ExitCode> {
    let FederationCommand::Publish {
        data_dir,
        region,
        url,
        ca,
    } = command;
    let region = RegionId::parse(&region).context("--region")?;
    if sovereign_cloud::Policies::embedded()?
        .regions
        .get(&region)
        .is_none()
    {
        anyhow::bail!("region {region} is not configured");
    }
    let ca = match &ca {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let entry = sovereign_cloud::sites::publish(&data_dir, &region, &url, ca)?;
    print!("{}", sovereign_cloud::sites::render(&[entry])?);
    Ok(ExitCode::SUCCESS)
}
