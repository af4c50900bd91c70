//! The asset-transfer-basic functions.

use serde::{Deserialize, Serialize};
use twill_chaincode_shim::{KeyModification, Router, Stub, Timestamp};

/// Why a function rejected the transaction.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// Wrong number of arguments.
    #[error("{function} expects {expected} argument(s) ({names}), got {got}")]
    ArgCount {
        /// The function called.
        function: &'static str,
        /// How many it takes.
        expected: usize,
        /// Their names, comma-separated.
        names: String,
        /// How many came.
        got: usize,
    },
    /// A numeric argument is not an integer.
    #[error("{name} must be an integer, got {value:?}")]
    NotInteger {
        /// The argument's name.
        name: &'static str,
        /// What came instead.
        value: String,
    },
    /// `CreateAsset` on an existing id.
    #[error("the asset {0} already exists")]
    AlreadyExists(String),
    /// An operation on a missing id.
    #[error("the asset {0} does not exist")]
    NotFound(String),
    /// A stored value is not an asset.
    #[error("the value under {key} is not an asset: {source}")]
    Corrupt {
        /// The key read.
        key: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// `QueryAssets` got a query that is not JSON.
    #[error("the query is not valid JSON: {0}")]
    BadQuery(serde_json::Error),
    /// Serialising a result failed.
    #[error("cannot serialise the result: {0}")]
    Json(#[from] serde_json::Error),
    /// A chaincode called by `ReadAssetFrom` answered with an error.
    #[error("chaincode {chaincode} answered {status}: {message}")]
    Called {
        /// The chaincode called.
        chaincode: String,
        /// Its status.
        status: i32,
        /// Its message.
        message: String,
    },
    /// The shim or the peer failed.
    #[error(transparent)]
    Shim(#[from] twill_chaincode_shim::Error),
}

impl From<AssetError> for twill_chaincode_shim::Error {
    fn from(error: AssetError) -> Self {
        match error {
            AssetError::Shim(inner) => inner,
            other => Self::chaincode(other.to_string()),
        }
    }
}

/// Result with [`AssetError`].
pub type Result<T, E = AssetError> = std::result::Result<T, E>;

/// An asset as stored on the ledger. Fields are declared in alphabetical
/// order so the JSON matches the Go sample's sorted output byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// Appraised value.
    #[serde(rename = "AppraisedValue")]
    pub appraised_value: i64,
    /// Colour.
    #[serde(rename = "Color")]
    pub color: String,
    /// Asset id, also its state key.
    #[serde(rename = "ID")]
    pub id: String,
    /// Current owner.
    #[serde(rename = "Owner")]
    pub owner: String,
    /// Size.
    #[serde(rename = "Size")]
    pub size: i64,
}

/// One entry of `GetAssetHistory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRecord {
    /// The transaction that changed the asset.
    #[serde(rename = "txId")]
    pub tx_id: String,
    /// Its timestamp, RFC 3339.
    pub timestamp: Option<String>,
    /// Whether it deleted the asset.
    #[serde(rename = "isDelete")]
    pub is_delete: bool,
    /// The asset as written; `null` for a delete.
    pub asset: Option<Asset>,
}

/// The chaincode: every function of asset-transfer-basic.
pub fn router() -> Router {
    Router::new()
        .route("InitLedger", init_ledger)
        .route("CreateAsset", create_asset)
        .route("ReadAsset", read_asset)
        .route("UpdateAsset", update_asset)
        .route("DeleteAsset", delete_asset)
        .route("AssetExists", asset_exists)
        .route("TransferAsset", transfer_asset)
        .route("GetAllAssets", get_all_assets)
        .route("GetAssetHistory", get_asset_history)
        .route("QueryAssets", query_assets)
        .route("ReadAssetFrom", read_asset_from)
}

/// The six assets `InitLedger` creates.
pub fn initial_assets() -> Vec<Asset> {
    [
        ("asset1", "blue", 5, "Tomoko", 300),
        ("asset2", "red", 5, "Brad", 400),
        ("asset3", "green", 10, "Jin Soo", 500),
        ("asset4", "yellow", 10, "Max", 600),
        ("asset5", "black", 15, "Adriana", 700),
        ("asset6", "white", 15, "Michel", 800),
    ]
    .into_iter()
    .map(|(id, color, size, owner, appraised_value)| Asset {
        appraised_value,
        color: color.into(),
        id: id.into(),
        owner: owner.into(),
        size,
    })
    .collect()
}

/// Checks the argument count and hands the arguments back as an array.
pub fn take_args<const N: usize>(
    function: &'static str,
    names: [&'static str; N],
    args: Vec<String>,
) -> Result<[String; N]> {
    let got = args.len();
    <[String; N]>::try_from(args).map_err(|_| AssetError::ArgCount {
        function,
        expected: N,
        names: names.join(", "),
        got,
    })
}

/// Parses an integer argument.
pub fn parse_int(name: &'static str, value: &str) -> Result<i64> {
    value.parse().map_err(|_| AssetError::NotInteger {
        name,
        value: value.to_owned(),
    })
}

/// Builds an asset from `id, color, size, owner, appraisedValue`.
fn asset_from_args(function: &'static str, args: Vec<String>) -> Result<Asset> {
    let [id, color, size, owner, appraised_value] = take_args(
        function,
        ["id", "color", "size", "owner", "appraisedValue"],
        args,
    )?;
    Ok(Asset {
        appraised_value: parse_int("appraisedValue", &appraised_value)?,
        color,
        id,
        owner,
        size: parse_int("size", &size)?,
    })
}

/// RFC 3339 with the fraction trimmed of trailing zeros, as Go prints
/// `time.Time` in JSON.
pub fn rfc3339(timestamp: &Timestamp) -> String {
    let text = timestamp.to_string();
    match text.strip_suffix('Z').and_then(|body| body.split_once('.')) {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                format!("{whole}Z")
            } else {
                format!("{whole}.{fraction}Z")
            }
        }
        None => text,
    }
}

fn parse_asset(key: &str, bytes: &[u8]) -> Result<Asset> {
    serde_json::from_slice(bytes).map_err(|source| AssetError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

async fn load(stub: &mut Stub, id: &str) -> Result<Asset> {
    match stub.get_state(id).await? {
        Some(bytes) => parse_asset(id, &bytes),
        None => Err(AssetError::NotFound(id.to_owned())),
    }
}

async fn store(stub: &mut Stub, asset: &Asset) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(asset)?;
    stub.put_state(&asset.id, json.clone()).await?;
    Ok(json)
}

async fn init_ledger(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    take_args("InitLedger", [], args)?;
    for asset in initial_assets() {
        store(stub, &asset).await?;
    }
    Ok(Vec::new())
}

async fn create_asset(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    let asset = asset_from_args("CreateAsset", args)?;
    if stub.get_state(&asset.id).await?.is_some() {
        return Err(AssetError::AlreadyExists(asset.id));
    }
    let json = store(stub, &asset).await?;
    stub.set_event("CreateAsset", json)?;
    Ok(Vec::new())
}

async fn read_asset(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    let [id] = take_args("ReadAsset", ["id"], args)?;
    let asset = load(stub, &id).await?;
    Ok(serde_json::to_vec(&asset)?)
}

async fn update_asset(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    let asset = asset_from_args("UpdateAsset", args)?;
    if stub.get_state(&asset.id).await?.is_none() {
        return Err(AssetError::NotFound(asset.id));
    }
    let json = store(stub, &asset).await?;
    stub.set_event("UpdateAsset", json)?;
    Ok(Vec::new())
}

async fn delete_asset(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    let [id] = take_args("DeleteAsset", ["id"], args)?;
    let asset = load(stub, &id).await?;
    stub.del_state(&id).await?;
    stub.set_event("DeleteAsset", serde_json::to_vec(&asset)?)?;
    Ok(Vec::new())
}

async fn asset_exists(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    let [id] = take_args("AssetExists", ["id"], args)?;
    let exists = stub.get_state(&id).await?.is_some();
    Ok(exists.to_string().into_bytes())
}

/// Twill addition (not in Fabric's sample): reads asset `id` through
/// chaincode `chaincode` on this channel (a chaincode-to-chaincode call),
/// returning that chaincode's answer.
async fn read_asset_from(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    let [chaincode, id] = take_args("ReadAssetFrom", ["chaincode", "id"], args)?;
    let answer = stub
        .invoke_chaincode(&chaincode, &["ReadAsset", id.as_str()], "")
        .await?;
    if answer.status >= 400 {
        return Err(AssetError::Called {
            chaincode,
            status: answer.status,
            message: answer.message,
        });
    }
    Ok(answer.payload)
}

async fn transfer_asset(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    let [id, new_owner] = take_args("TransferAsset", ["id", "newOwner"], args)?;
    let mut asset = load(stub, &id).await?;
    let old_owner = std::mem::replace(&mut asset.owner, new_owner);
    let json = store(stub, &asset).await?;
    stub.set_event("TransferAsset", json)?;
    Ok(old_owner.into_bytes())
}

async fn get_all_assets(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    take_args("GetAllAssets", [], args)?;
    let records = stub.get_state_by_range("", "").await?;
    let assets = records
        .iter()
        .map(|kv| parse_asset(&kv.key, &kv.value))
        .collect::<Result<Vec<_>>>()?;
    Ok(serde_json::to_vec(&assets)?)
}

/// Turns the peer's history of a key into the JSON records.
pub fn history_records(id: &str, history: &[KeyModification]) -> Result<Vec<HistoryRecord>> {
    history
        .iter()
        .map(|change| {
            let asset = if change.is_delete || change.value.is_empty() {
                None
            } else {
                Some(parse_asset(id, &change.value)?)
            };
            Ok(HistoryRecord {
                tx_id: change.tx_id.clone(),
                timestamp: change.timestamp.as_ref().map(rfc3339),
                is_delete: change.is_delete,
                asset,
            })
        })
        .collect()
}

async fn get_asset_history(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    let [id] = take_args("GetAssetHistory", ["id"], args)?;
    let history = stub.get_history_for_key(&id).await?;
    Ok(serde_json::to_vec(&history_records(&id, &history)?)?)
}

async fn query_assets(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>> {
    let [query] = take_args("QueryAssets", ["query"], args)?;
    serde_json::from_str::<serde_json::Value>(&query).map_err(AssetError::BadQuery)?;
    let records = stub.get_query_result(&query).await?;
    let assets = records
        .iter()
        .map(|kv| parse_asset(&kv.key, &kv.value))
        .collect::<Result<Vec<_>>>()?;
    Ok(serde_json::to_vec(&assets)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_json_has_sorted_keys() {
        let asset = &initial_assets()[0];
        assert_eq!(
            serde_json::to_string(asset).unwrap(),
            r#"{"AppraisedValue":300,"Color":"blue","ID":"asset1","Owner":"Tomoko","Size":5}"#
        );
        let parsed: Asset = serde_json::from_str(
            r#"{"ID":"a","Color":"c","Size":1,"Owner":"o","AppraisedValue":2}"#,
        )
        .unwrap();
        assert_eq!(parsed.size, 1);
        assert_eq!(parsed.appraised_value, 2);
    }

    #[test]
    fn initial_assets_match_the_sample() {
        let assets = initial_assets();
        assert_eq!(assets.len(), 6);
        assert_eq!(assets[2].owner, "Jin Soo");
        assert_eq!(
            (
                assets[5].id.as_str(),
                assets[5].size,
                assets[5].appraised_value
            ),
            ("asset6", 15, 800)
        );
    }

    #[test]
    fn argument_count_is_checked() {
        let [a, b] = take_args(
            "TransferAsset",
            ["id", "newOwner"],
            vec!["x".into(), "y".into()],
        )
        .unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("x", "y"));
        let error = take_args("TransferAsset", ["id", "newOwner"], vec!["x".into()]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "TransferAsset expects 2 argument(s) (id, newOwner), got 1"
        );
        assert!(take_args("GetAllAssets", [], vec!["extra".into()]).is_err());
    }

    #[test]
    fn asset_arguments_are_parsed() {
        let args = |size: &str| -> Vec<String> {
            ["asset9", "red", size, "Ann", "1000"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        };
        let asset = asset_from_args("CreateAsset", args("7")).unwrap();
        assert_eq!(
            asset,
            Asset {
                appraised_value: 1000,
                color: "red".into(),
                id: "asset9".into(),
                owner: "Ann".into(),
                size: 7,
            }
        );
        let error = asset_from_args("CreateAsset", args("big")).unwrap_err();
        assert_eq!(error.to_string(), r#"size must be an integer, got "big""#);
        let shim_error: twill_chaincode_shim::Error = error.into();
        assert_eq!(shim_error.status(), 500);
        assert_eq!(
            shim_error.to_string(),
            r#"size must be an integer, got "big""#
        );
    }

    #[test]
    fn history_json_shape() {
        let asset = initial_assets().remove(0);
        let history = [
            KeyModification {
                tx_id: "t1".into(),
                value: serde_json::to_vec(&asset).unwrap(),
                timestamp: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 120_000_000,
                }),
                is_delete: false,
            },
            KeyModification {
                tx_id: "t2".into(),
                value: Vec::new(),
                timestamp: Some(Timestamp {
                    seconds: 1_700_000_001,
                    nanos: 0,
                }),
                is_delete: true,
            },
        ];
        let records = history_records("asset1", &history).unwrap();
        assert_eq!(
            serde_json::to_string(&records).unwrap(),
            concat!(
                r#"[{"txId":"t1","timestamp":"2023-11-14T22:13:20.12Z","isDelete":false,"#,
                r#""asset":{"AppraisedValue":300,"Color":"blue","ID":"asset1","Owner":"Tomoko","Size":5}},"#,
                r#"{"txId":"t2","timestamp":"2023-11-14T22:13:21Z","isDelete":true,"asset":null}]"#
            )
        );
    }

    #[test]
    fn timestamps_print_like_go() {
        let ts = |seconds, nanos| rfc3339(&Timestamp { seconds, nanos });
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(ts(0, 500), "1970-01-01T00:00:00.0000005Z");
        assert_eq!(ts(0, 123_456_789), "1970-01-01T00:00:00.123456789Z");
    }
}
