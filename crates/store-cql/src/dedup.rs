//! De-duplication keys claimed by lightweight transaction.

use async_trait::async_trait;
use parley_domain::{
    ports::{Claim, DedupKeys},
    LogPosition, StoreError,
};
use scylla::value::{CqlValue, Row};

use crate::{rows_error, Cql};

#[async_trait]
impl DedupKeys for Cql {
    #[tracing::instrument(name = "cql.dedup_claim", skip_all)]
    async fn claim(&self, key: &str, payload: &[u8]) -> Result<Claim, StoreError> {
        let rows = self
            .run(&self.st.dedup_claim, (key, payload))
            .await?
            .into_rows_result()
            .map_err(rows_error)?;
        let specs: Vec<String> = rows
            .column_specs()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let row: Row = rows.single_row().map_err(rows_error)?;
        let col = |name: &str| {
            specs
                .iter()
                .position(|n| n == name)
                .and_then(|i| row.columns.get(i).cloned().flatten())
        };
        if let Some(CqlValue::Boolean(true)) = col("[applied]") {
            return Ok(Claim::Won);
        }
        let Some(CqlValue::Blob(payload)) = col("payload") else {
            return Err(StoreError::unexpected_msg(format!(
                "dedup key {key} is taken but holds no event"
            )));
        };
        let appended = match (col("log_partition"), col("log_offset")) {
            (Some(CqlValue::Int(p)), Some(CqlValue::BigInt(o))) => Some(LogPosition {
                partition: p.max(0) as u32,
                offset: o,
            }),
            _ => None,
        };
        Ok(Claim::Taken { payload, appended })
    }

    async fn settle(&self, key: &str, at: LogPosition) -> Result<(), StoreError> {
        self.run(&self.st.dedup_settle, (at.partition as i32, at.offset, key))
            .await
            .map(drop)
    }
}
