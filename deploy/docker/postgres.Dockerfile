# A PostgreSQL 15 image for the local container cluster (cluster.sh) and the chart's bundled database,
# made from the local Debian base with Debian's postgresql-15, no registry needed. It honours the
# official image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB / PGDATA, so either image fits.
ARG BASE_TAG=bookworm-r2
FROM tollgate/postgres-base:${BASE_TAG}
COPY deploy/docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data/pgdata
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
