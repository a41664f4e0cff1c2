//! Datasets: CSV uploads stored under their sha256, with the columns and row count read
//! (and malformed files refused) at upload; listing, download and deletion.

use bytes::Bytes;
use modelplane_store::schema::{self, DatasetRecord, VersionRecord};

use crate::domain::{DATASETS, check_name, sha256_hex};
use crate::{Error, Registry, Result};

/// A complete dataset upload.
#[derive(Debug)]
pub struct DatasetUpload {
    /// Dataset name.
    pub name: String,
    /// Expected sha256, or empty.
    pub sha256: String,
    /// The CSV.
    pub bytes: Bytes,
}

impl Registry {
    /// Stores a CSV dataset under its sha256 and records its columns and row count.
    pub async fn upload_dataset(&self, upload: DatasetUpload) -> Result<DatasetRecord> {
        check_name("dataset name", &upload.name)?;
        let sha256 = sha256_hex(&upload.bytes);
        if !upload.sha256.is_empty() && !upload.sha256.eq_ignore_ascii_case(&sha256) {
            return Err(Error::InvalidArgument(format!(
                "dataset sha256 mismatch: declared {}, received bytes hash to {sha256}; nothing was stored",
                upload.sha256
            )));
        }
        let (columns, rows) = csv_shape(&upload.bytes)?;
        self.blobs.put(DATASETS, &sha256, upload.bytes.clone()).await?;
        let record = DatasetRecord {
            name: upload.name.clone(),
            sha256: sha256.clone(),
            size_bytes: upload.bytes.len() as u64,
            columns,
            rows,
            created_unix_ms: schema::now_unix_ms(),
        };
        self.store.put(&schema::dataset_key(&upload.name, &sha256), schema::encode(&record), None).await?;
        let after = format!("sha256 {sha256}, {} rows", record.rows);
        self.audit("upload_dataset", "", &upload.name, String::new(), after, "").await;
        Ok(record)
    }

    /// Every dataset upload.
    pub async fn list_datasets(&self) -> Result<Vec<DatasetRecord>> {
        let snapshot = self.store.range(schema::DATASETS).await?;
        Ok(snapshot.kvs.iter().map(|kv| schema::decode(&kv.key, &kv.value)).collect::<Result<_, _>>()?)
    }

    /// A dataset record and its bytes; empty `sha256` means the newest upload of `name`.
    pub async fn download_dataset(&self, name: &str, sha256: &str) -> Result<(DatasetRecord, Bytes)> {
        let record = self.get_dataset(name, sha256).await?;
        let bytes = self.blobs.get(DATASETS, &record.sha256).await?;
        Ok((record, bytes))
    }

    /// A dataset record; empty `sha256` means the newest upload of `name`.
    pub async fn get_dataset(&self, name: &str, sha256: &str) -> Result<DatasetRecord> {
        modelplane_store::find_dataset(&*self.store, name, sha256).await?.ok_or_else(|| match sha256 {
            "" => Error::NotFound(format!("dataset {name:?} not found; upload it first")),
            sha => Error::NotFound(format!("dataset {name:?} has no upload with sha256 {sha}")),
        })
    }

    /// Deletes a dataset upload; refused while a version's lineage names it.
    pub async fn delete_dataset(&self, name: &str, sha256: &str) -> Result<()> {
        let record = self.get_dataset(name, sha256).await?;
        let models = self.store.range(schema::MODELS).await?;
        let mut users = Vec::new();
        for kv in &models.kvs {
            if let Some(schema::ModelsKey::Version(model, number)) = schema::parse_models_key(&kv.key) {
                let version: VersionRecord = schema::decode(&kv.key, &kv.value)?;
                if version.lineage.dataset_sha256 == record.sha256 {
                    users.push(format!("{model} v{number}"));
                }
            }
        }
        if !users.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "dataset {name:?} ({}) is the lineage of {}; delete those versions first",
                record.sha256,
                users.join(", ")
            )));
        }
        self.store.delete(&schema::dataset_key(name, &record.sha256)).await?;
        self.audit("delete_dataset", "", name, format!("sha256 {}", record.sha256), String::new(), "").await;
        Ok(())
    }
}

/// Header columns and record count of a CSV, refusing malformed ones at upload (RFC 4180
/// quoting: fields may hold commas and newlines).
fn csv_shape(bytes: &[u8]) -> Result<(Vec<String>, u64)> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(Error::InvalidArgument("dataset is not UTF-8 text; expected a CSV".into()));
    }
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes);
    let columns: Vec<String> = reader
        .headers()
        .map_err(|err| Error::InvalidArgument(format!("dataset header is not valid CSV: {err}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err(Error::InvalidArgument("dataset is empty; expected a CSV header row".into()));
    }
    let mut rows = 0u64;
    for record in reader.records() {
        record.map_err(|err| Error::InvalidArgument(format!("dataset row {}: {err}", rows + 1)))?;
        rows += 1;
    }
    Ok((columns, rows))
}
