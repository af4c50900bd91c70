//! A complete application on `twill-client`: creates an asset with the
//! `basic` chaincode on `mychannel`, reads it back, and shows the chaincode
//! event its creation emitted.
//!
//! Start a network first (`twill network up`), then:
//!
//! ```text
//! cargo run -p twill-client --example asset_transfer
//! cargo run -p twill-client --example asset_transfer -- --state-dir /tmp/net
//! cargo run -p twill-client --example asset_transfer -- --profile connection-org1.yaml --msp path/to/msp
//! ```
//!
//! Defaults follow `twill network up`'s state folder `./.twill-network`:
//! Org1's connection profile and its User1 identity.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use twill_client::{ChaincodeInvoker, ChaincodeQuerier, EventsOptions, Gateway, StreamExt as _};

const CHANNEL: &str = "mychannel";
const CHAINCODE: &str = "basic";

struct Args {
    profile: PathBuf,
    msp: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut state_dir = PathBuf::from(".twill-network");
    let mut profile = None;
    let mut msp = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--state-dir" => state_dir = PathBuf::from(value()?),
            "--profile" => profile = Some(PathBuf::from(value()?)),
            "--msp" => msp = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                return Err(
                    "usage: asset_transfer [--state-dir DIR] [--profile FILE] [--msp DIR]".into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let org = state_dir.join("organizations/peerOrganizations/org1.example.com");
    Ok(Args {
        profile: profile.unwrap_or_else(|| org.join("connection-org1.yaml")),
        msp: msp.unwrap_or_else(|| org.join("users/User1@org1.example.com/msp")),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;

    // One connection to Org1's gateway peer, as User1.
    let gateway = Gateway::from_profile(&args.profile, &args.msp).await?;
    let network = gateway.network(CHANNEL);
    let contract = network.contract(CHAINCODE);

    // Listen before submitting, so the event cannot be missed.
    let mut events = network
        .chaincode_events(CHAINCODE, EventsOptions::new())
        .await?;

    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let id = format!("asset-{nanos}");
    ChaincodeInvoker::new(contract.clone())
        .invoke("CreateAsset", &[&id, "blue", "5", "Tom", "100"])
        .await?;
    println!("created {id}");

    let asset: serde_json::Value = ChaincodeQuerier::new(contract)
        .query_json("ReadAsset", &[&id])
        .await?;
    println!("read back: {asset}");

    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .map_err(|_| "no chaincode event within 30 s")?;
        let event = next.ok_or("the event stream ended")??;
        let payload = String::from_utf8_lossy(&event.payload);
        if payload.contains(&id) {
            println!(
                "event {} in block {} (tx {}): {payload}",
                event.event_name, event.block_number, event.transaction_id
            );
            return Ok(());
        }
    }
}
