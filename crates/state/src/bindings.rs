use rusqlite::{OptionalExtension as _, params};
use tether_device_key::{BindingStore, DeviceKeyError, KeyBinding, KeyId};

use crate::{StateDb, StateError, unix_now};

fn platform(error: StateError) -> DeviceKeyError {
    DeviceKeyError::Platform(error.to_string())
}

impl BindingStore for StateDb {
    async fn insert(&self, binding: KeyBinding) -> Result<(), DeviceKeyError> {
        self.run(move |connection| {
            let now = unix_now();
            connection.execute(
                "INSERT INTO device_key_bindings
                    (key_id, account_user_id, client_id, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![
                    binding.key_id.as_str(),
                    binding.account_user_id,
                    binding.client_id,
                    now
                ],
            )
        })
        .await
        .map(drop)
        .map_err(platform)
    }

    async fn get(&self, key_id: &KeyId) -> Result<Option<KeyBinding>, DeviceKeyError> {
        let key = key_id.clone();
        let row = self
            .run(move |connection| {
                connection
                    .query_row(
                        "SELECT account_user_id, client_id FROM device_key_bindings
                         WHERE key_id = ?1",
                        [key.as_str()],
                        |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
                    )
                    .optional()
            })
            .await
            .map_err(platform)?;
        Ok(row.map(|(account_user_id, client_id)| KeyBinding {
            key_id: key_id.clone(),
            account_user_id,
            client_id,
        }))
    }
}
