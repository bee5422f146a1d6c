-- docker-compose only: one database per service, created on the first start of an empty volume
-- (the postgres image runs /docker-entrypoint-initdb.d/*.sql once). On Kubernetes the same
-- databases are CloudNativePG `Database` resources (deploy/k8s/operators/postgres.yaml).
CREATE DATABASE firstline_ingest;
CREATE DATABASE firstline_router;
CREATE DATABASE firstline_tickets;
CREATE DATABASE firstline_notify;
CREATE DATABASE firstline_gateway;
