//! Datasets: CSV uploads stored under their sha256, with the columns and row count read
//! (and malformed files refused) at upload; listing, download and deletion.

use futures::Stream;
use modelplane_store::schema::{self, DatasetRecord, VersionRecord};

use crate::blobs::BlobStream;
use crate::domain::{DATASETS, check_name};
use crate::upload::{Declared, UploadPart};
use crate::{Error, Registry, Result, StagedBlob};

/// A dataset upload's manifest; its bytes follow as [`UploadPart`]s.
#[derive(Debug)]
pub struct DatasetUpload {
    /// Dataset name.
    pub name: String,
    /// Expected sha256, or empty.
    pub sha256: String,
    /// Expected size, or 0.
    pub size_bytes: u64,
}

impl Registry {
    /// Streams a CSV dataset into the blob store while reading its columns and row count
    /// from the same bytes (refusing a malformed one), then publishes it under its sha256.
    pub async fn upload_dataset<S>(&self, upload: DatasetUpload, parts: S) -> Result<DatasetRecord>
    where
        S: Stream<Item = Result<UploadPart>> + Send + Unpin,
    {
        check_name("dataset name", &upload.name)?;
        let declared = Declared {
            what: "dataset",
            sha256: &upload.sha256,
            size_bytes: upload.size_bytes,
            sha256_required: false,
            limit: self.config.max_dataset_bytes,
        };
        let (staged, (columns, rows)) = crate::upload::receive_checked(&self.blobs, declared, parts, csv_shape).await?;
        match self.register_dataset(upload, &staged, columns, rows).await {
            Ok(record) => Ok(record),
            Err(err) => {
                self.blobs.discard(&staged).await;
                Err(err)
            }
        }
    }

    async fn register_dataset(
        &self,
        upload: DatasetUpload,
        staged: &StagedBlob,
        columns: Vec<String>,
        rows: u64,
    ) -> Result<DatasetRecord> {
        self.blobs.publish(staged, DATASETS).await?;
        let sha256 = staged.sha256.clone();
        let record = DatasetRecord {
            name: upload.name.clone(),
            sha256: sha256.clone(),
            size_bytes: staged.size,
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

    /// A dataset record and its bytes from `offset` (see [`Registry::download`]); empty
    /// `sha256` means the newest upload of `name`.
    pub async fn download_dataset(&self, name: &str, sha256: &str, offset: u64) -> Result<(DatasetRecord, BlobStream)> {
        let record = self.get_dataset(name, sha256).await?;
        let bytes = self.blobs.read(DATASETS, &record.sha256, offset).await?;
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

/// Header columns and record count of a CSV, read as it arrives, refusing malformed
/// ones at upload (RFC 4180 quoting: fields may hold commas and newlines). Only the
/// header is trimmed: the rows are counted and checked, not kept.
fn csv_shape(bytes: impl std::io::Read) -> Result<(Vec<String>, u64)> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::Headers).from_reader(bytes);
    let not_text = |err: &csv::Error| matches!(err.kind(), csv::ErrorKind::Utf8 { .. });
    let columns: Vec<String> = reader
        .headers()
        .map_err(|err| match not_text(&err) {
            true => Error::InvalidArgument("dataset is not UTF-8 text; expected a CSV".into()),
            false => Error::InvalidArgument(format!("dataset header is not valid CSV: {err}")),
        })?
        .iter()
        .map(str::to_owned)
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err(Error::InvalidArgument("dataset is empty; expected a CSV header row".into()));
    }
    let mut rows = 0u64;
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => rows += 1,
            Ok(false) => break,
            Err(err) if not_text(&err) => {
                return Err(Error::InvalidArgument(format!(
                    "dataset row {} is not UTF-8 text; expected a CSV",
                    rows + 1
                )));
            }
            Err(err) => return Err(Error::InvalidArgument(format!("dataset row {}: {err}", rows + 1))),
        }
    }
    Ok((columns, rows))
}
