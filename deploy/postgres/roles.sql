-- Furrow's PostgreSQL roles: one per service, each owning one schema of
-- the same name and nothing else, so a service reads and writes its own
-- read models and cannot read another's (permission denied for schema).
-- None is a superuser or may create databases or roles; the public schema
-- is closed to all of them.
--
-- The postgres image runs it once, on an empty data directory
-- (docker-compose.yml mounts it in /docker-entrypoint-initdb.d). By hand,
-- as a superuser, on the database the services use (it is idempotent: a
-- second run only resets the passwords):
--
--   POSTGRES_PROCUREMENT_PASSWORD=… POSTGRES_BRAND_PASSWORD=… POSTGRES_LEDGER_PASSWORD=… \
--     psql -v ON_ERROR_STOP=1 -d furrow -f deploy/postgres/roles.sql
--
-- The passwords come from those variables (psql 15 or later: \getenv).
-- Each service's DSN then names its role:
-- postgres://ledger:…@db:5432/furrow?sslmode=verify-full (the role's
-- search_path is its schema).

\set ON_ERROR_STOP on
\getenv procurement_password POSTGRES_PROCUREMENT_PASSWORD
\getenv brand_password POSTGRES_BRAND_PASSWORD
\getenv ledger_password POSTGRES_LEDGER_PASSWORD
\if :{?procurement_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'roles.sql: POSTGRES_PROCUREMENT_PASSWORD is not set'; END $$;
\endif
\if :{?brand_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'roles.sql: POSTGRES_BRAND_PASSWORD is not set'; END $$;
\endif
\if :{?ledger_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'roles.sql: POSTGRES_LEDGER_PASSWORD is not set'; END $$;
\endif

BEGIN;

-- Nobody but the roles granted below may connect; nobody may use public.
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY['procurement', 'brand', 'ledger']) AS r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec

ALTER ROLE procurement WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'procurement_password';
ALTER ROLE brand WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'brand_password';
ALTER ROLE ledger WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'ledger_password';

GRANT CONNECT ON DATABASE :"DBNAME" TO procurement, brand, ledger;

CREATE SCHEMA IF NOT EXISTS procurement AUTHORIZATION procurement;
CREATE SCHEMA IF NOT EXISTS brand AUTHORIZATION brand;
CREATE SCHEMA IF NOT EXISTS ledger AUTHORIZATION ledger;
REVOKE ALL ON SCHEMA procurement, brand, ledger FROM PUBLIC;

ALTER ROLE procurement IN DATABASE :"DBNAME" SET search_path = procurement;
ALTER ROLE brand IN DATABASE :"DBNAME" SET search_path = brand;
ALTER ROLE ledger IN DATABASE :"DBNAME" SET search_path = ledger;

COMMIT;
