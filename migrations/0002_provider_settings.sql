-- Provider accounts of every kind: per-kind settings (Azure api_version, Vertex project and location,
-- Bedrock region, ...) as a JSON object the dataplane's adapters read. docs/api.md lists them per kind.
ALTER TABLE providers ADD COLUMN settings jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE providers ADD CONSTRAINT providers_settings_object CHECK (jsonb_typeof(settings) = 'object');
