"""What a running API process holds: built once at start-up from the config."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from app import metrics
from app.auth import Authenticator, SigningKey
from app.config import Config
from app.directory import Directory
from app.directory.pool import Endpoint
from app.directory.replicas import ReplicatedPool
from app.domain import AccountTypes
from app.mail import Mailer, mailer_from
from app.pictures import Pictures, PictureSettings
from app.service import UserService
from app.service.base import Pools
from app.throttle import LoginThrottle, ThrottleRules
from app.verification import EmailCodes


@dataclass
class Runtime:
    config: Config
    directory: Directory
    service: UserService
    auth: Authenticator
    mailer: Mailer

    @classmethod
    def build(cls, config: Config) -> Runtime:
        def endpoint_at(url: str) -> Endpoint:
            return Endpoint(url=url, bind_dn=config.bind_dn, password=config.bind_password,
                            connect_timeout=config.ldap.connect_timeout,
                            operation_timeout=config.ldap.operation_timeout)

        endpoint = endpoint_at(config.ldap_url)
        ldap = config.ldap
        # Every worker of both pools may hold a pooled connection at once.
        directory = Directory(endpoint, ldap.base_dn,
                              pool_size=ldap.pool_size + ldap.bind_pool_size,
                              max_idle=ldap.max_idle,
                              listing_slots=config.listing.contexts,
                              listing_ttl=config.listing.context_ttl,
                              sort_timeout=config.listing.sort_timeout,
                              readers=[endpoint_at(url) for url in ldap.read_urls],
                              max_lag=ldap.max_lag)
        types = AccountTypes(config.users.account_types, config.users.default_account_type)
        pictures = config.pictures
        pools = Pools.sized(ldap.pool_size, ldap.bind_pool_size, queue_limit=ldap.queue_limit,
                            bind_queue_limit=ldap.bind_queue_limit,
                            client_limit=ldap.client_limit, decoders=pictures.decoders,
                            decode_queue=pictures.decode_queue, observer=metrics.PoolObserver())
        endpoint.breaker.on_trip = metrics.breaker_tripped
        if isinstance(directory.pool, ReplicatedPool):
            directory.pool.freshness.on_lag = metrics.replica_seen
        service = UserService(
            directory, types, gid_number=config.users.gid_number, pools=pools,
            pictures=Pictures(PictureSettings(
                max_side=pictures.max_side, thumbnail_side=pictures.thumbnail_side,
                quality=pictures.quality, max_pixels=pictures.max_pixels)),
            codes=EmailCodes(lifetime=timedelta(seconds=config.mail.code_lifetime),
                             resend_interval=timedelta(seconds=config.mail.resend_interval)),
            max_password_bytes=config.auth.max_password_length,
        )
        throttle = config.throttle
        auth = Authenticator(
            service, SigningKey.load_or_create(config.signing_key_path),
            issuer=config.auth.issuer, access_ttl=config.auth.access_token_ttl,
            refresh_ttl=config.auth.refresh_token_ttl, leeway=config.auth.leeway,
            throttle=LoginThrottle(ThrottleRules(
                window=throttle.window, address_free=throttle.address_free,
                address_max_delay=throttle.address_max_delay,
                account_free=throttle.account_free,
                account_max_delay=throttle.account_max_delay,
                trust_days=throttle.trust_days)),
        )
        return cls(config, directory, service, auth, mailer_from(config.mail))

    def close(self) -> None:
        self.service.close()
