# dctoolkit's images, built FROM a local Debian base image, no registry needed:
#   deploy/docker/base-image   (debootstrap's minimal bookworm, imported as dct-base:bookworm)
# Three targets (docker-compose.yml builds each): redis and postgres (Debian's own packages) and app
# (the portal, scheduler, Flower and node workers: Debian's python3, the pinned requirements.txt from PyPI,
# bubblewrap).  The classic builder builds every stage up to its target, so the small ones come first.
ARG BASE=dct-base:bookworm
FROM ${BASE} AS os
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update && apt-get upgrade -y && rm -rf /var/lib/apt/lists/*

FROM os AS redis
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /data /usr/local/etc/redis && chown redis:redis /data
COPY deploy/docker/redis-entrypoint /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
EXPOSE 6379

FROM os AS postgres
# No cluster from the package: the entrypoint makes the one in PGDATA (the volume) on first start.
RUN mkdir -p /etc/postgresql-common && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf \
 && apt-get update && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /var/lib/postgresql/data /run/postgresql \
 && chown postgres:postgres /var/lib/postgresql/data /run/postgresql
COPY deploy/docker/postgres-entrypoint /usr/local/bin/docker-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
EXPOSE 5432
CMD ["docker-entrypoint.sh"]

FROM os AS app
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 1000 --user-group dct
# The site's own CAs, if any (deploy/docker/ca-certificates/README.md): PyPI through a TLS-inspecting proxy.
COPY deploy/docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates && python3 -m venv /opt/venv
COPY requirements.txt /app/requirements.txt
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
    -r /app/requirements.txt
COPY . /app
# The storage volume takes this folder's owner when Docker first fills it; var/ holds static files and scratch.
RUN mkdir -p /storage /app/var && chown dct:dct /storage /app/var
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER dct
