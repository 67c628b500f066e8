#!/bin/sh
# certbot run once, then gone: the host's cron starts it twice a day (cloud-init),
# the operator once at deploy (docs/install.md). Without a certificate for $DOMAIN
# yet, it asks for the first one through the webroot nginx serves on port 80;
# with one, `certbot renew` renews it within 30 days of its end and otherwise
# does nothing. Arguments go to certbot (`--force-renewal`). nginx notices a new
# certificate by itself (its entrypoint.sh). Nothing stays running between two
# runs: a resident certbot held 40-60 MiB for a job of seconds twice a day.
set -eu
: "${DOMAIN:?set DOMAIN, the name Zoom posts to}"
: "${ACME_EMAIL:?set ACME_EMAIL, where Let's Encrypt writes about the certificate}"
webroot=/var/www/acme
# ACME_SERVER is empty for Let's Encrypt itself; tests point it at Pebble. The
# cron line waits a random while itself, so that certbot's own wait (which would
# keep it resident for minutes) is skipped.
set -- --non-interactive --agree-tos --webroot -w "$webroot" --no-random-sleep-on-renew ${ACME_SERVER:+--server "$ACME_SERVER"} "$@"

if [ -e "/etc/letsencrypt/renewal/$DOMAIN.conf" ]; then
    exec certbot renew "$@"
fi
exec certbot certonly "$@" --email "$ACME_EMAIL" --cert-name "$DOMAIN" -d "$DOMAIN"
