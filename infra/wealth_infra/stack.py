"""WealthStack: the AWS side of wealth_pipeline for one environment.

* S3 data bucket with the lakehouse tiers as key prefixes (raw/, processed/, models/, artifacts/) and
  the vendor landing zone (landing/): KMS encryption, versioning, SSL only, no public access, raw/
  moved to infrequent access then Glacier, and a bucket policy that denies deleting anything in raw/.
* ECR repository for the project image (immutable tags, scan on push).
* ECS cluster (Fargate) running the Dagster webserver, daemon and code location (gRPC, found through
  Cloud Map); runs are ECS tasks launched by dagster-aws' EcsRunLauncher from the `run` task definition.
* IAM: one task role per process; run roles per tier (ingest, processing, model), least privilege.
* Database: TimescaleDB is not offered by RDS; the warehouse and Dagster's storage live on Timescale
  Cloud (or a self-managed TimescaleDB), reached through URLs/passwords kept in Secrets Manager and
  injected as ECS secrets.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import (
    aws_ec2 as ec2,
)
from aws_cdk import (
    aws_ecr as ecr,
)
from aws_cdk import (
    aws_ecs as ecs,
)
from aws_cdk import (
    aws_iam as iam,
)
from aws_cdk import (
    aws_kms as kms,
)
from aws_cdk import (
    aws_logs as logs,
)
from aws_cdk import (
    aws_s3 as s3,
)
from aws_cdk import (
    aws_secretsmanager as secretsmanager,
)
from aws_cdk import (
    aws_servicediscovery as servicediscovery,
)
from constructs import Construct

TIERS = ("raw", "processed", "models", "quarantine", "artifacts")
LANDING = "landing"
COMPUTE_LOG_PREFIX = "artifacts/dagster/compute-logs"
GRPC_PORT = 4000
WEBSERVER_PORT = 3000
RUN_CONTAINER = "run"


def checkov_skip(resource: cdk.CfnResource, *skips: tuple[str, str]) -> None:
    """Record checkov suppressions (id, justification) in the resource's CloudFormation Metadata."""
    resource.add_metadata("checkov", {"skip": [{"id": check, "comment": why} for check, why in skips]})


class WealthStack(cdk.Stack):
    """Everything one environment (dev, prod, ...) needs on AWS."""

    def __init__(self, scope: Construct, construct_id: str, *, env_name: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.env_name = env_name
        prefix = f"wealth-{env_name}"
        context = self.node.try_get_context
        image_tag = context("wealth:imageTag") or "0.1.0"

        # ---- encryption key for the bucket, secrets, logs and the image repository ----------------
        self.key = kms.Key(
            self, "DataKey", alias=f"alias/{prefix}", enable_key_rotation=True,
            description=f"wealth_pipeline {env_name}: S3 data, secrets, logs",
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchLogs",
            principals=[iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                    f"arn:{cdk.Aws.PARTITION}:logs:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:log-group:/{prefix}/*"}},
        ))

        # ---- S3: access logs, then the data bucket ----------------------------------------------
        self.access_logs = s3.Bucket(
            self, "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 server access logging needs SSE-S3 targets
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=cdk.Duration.days(365),
                                              noncurrent_version_expiration=cdk.Duration.days(30))],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        checkov_skip(self.access_logs.node.default_child,
                     ("CKV_AWS_18", "This is the access-log target bucket; logging it into itself would loop."))

        self.bucket = s3.Bucket(
            self, "DataBucket",
            encryption=s3.BucketEncryption.KMS, encryption_key=self.key, bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs, server_access_logs_prefix="data-bucket/",
            removal_policy=cdk.RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="raw-to-infrequent-access-then-glacier", prefix="raw/",
                    transitions=[
                        s3.Transition(storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                                      transition_after=cdk.Duration.days(30)),
                        s3.Transition(storage_class=s3.StorageClass.GLACIER,
                                      transition_after=cdk.Duration.days(180)),
                    ],
                ),
                s3.LifecycleRule(id="landing-expire-processed-files", prefix=f"{LANDING}/",
                                 expiration=cdk.Duration.days(90)),
                s3.LifecycleRule(id="old-versions", noncurrent_version_expiration=cdk.Duration.days(30),
                                 abort_incomplete_multipart_upload_after=cdk.Duration.days(7)),
            ],
        )
        # Nobody (no role, no user, not even the account root through this bucket) deletes raw data.
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyDeletingRaw", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:DeleteObject", "s3:DeleteObjectVersion"],
            resources=[self.bucket.arn_for_objects("raw/*")],
        ))

        # ---- image repository ------------------------------------------------------------------
        self.repository = ecr.Repository(
            self, "Repository", repository_name=prefix,
            image_scan_on_push=True, image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.KMS, encryption_key=self.key,
            lifecycle_rules=[ecr.LifecycleRule(max_image_count=30, description="keep the last 30 images")],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

        # ---- secrets (values of the external TimescaleDB: set after deploy, see infra/README.md) --
        def secret(name: str, description: str, generate: bool) -> secretsmanager.Secret:
            made = secretsmanager.Secret(
                self, name, secret_name=f"{prefix}/{name}", description=description, encryption_key=self.key,
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    exclude_punctuation=True, password_length=40) if generate else None,
                removal_policy=cdk.RemovalPolicy.RETAIN,
            )
            return made

        self.secrets = {
            "WEALTH_DATABASE_URL": secret("warehouse-url", "Warehouse URL as wealth_loader (Timescale Cloud)", False),
            "WEALTH_ADMIN_DATABASE_URL": secret("warehouse-admin-url", "Warehouse URL of the migration owner", False),
            "DAGSTER_PG_PASSWORD": secret("dagster-pg-password", "Password of Dagster's storage role", True),
            "WEALTH_LOADER_PASSWORD": secret("loader-password", "Password of wealth_loader", True),
            "WEALTH_BI_PASSWORD": secret("bi-password", "Password of wealth_bi", True),
        }

        # ---- network, cluster, logs ------------------------------------------------------------
        self.vpc = ec2.Vpc(
            self, "Vpc", max_azs=2, nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
            ],
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
            restrict_default_security_group=False,
        )
        flow_logs = logs.LogGroup(self, "FlowLogs", log_group_name=f"/{prefix}/vpc-flow-logs",
                                  retention=logs.RetentionDays.ONE_YEAR, encryption_key=self.key,
                                  removal_policy=cdk.RemovalPolicy.RETAIN)
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))
        self.cluster = ecs.Cluster(self, "Cluster", cluster_name=prefix, vpc=self.vpc,
                                   container_insights_v2=ecs.ContainerInsights.ENABLED)
        self.log_group = logs.LogGroup(self, "TaskLogs", log_group_name=f"/{prefix}/ecs",
                                       retention=logs.RetentionDays.ONE_YEAR, encryption_key=self.key,
                                       removal_policy=cdk.RemovalPolicy.RETAIN)
        namespace = servicediscovery.PrivateDnsNamespace(self, "Namespace", name=f"{prefix}.internal", vpc=self.vpc)
        code_location_host = f"code-location.{prefix}.internal"

        # ---- IAM -----------------------------------------------------------------------------
        self.execution_role = iam.Role(
            self, "ExecutionRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="ECS agent: pull the image, write logs, read the task's secrets",
        )
        self.repository.grant_pull(self.execution_role)
        self.log_group.grant_write(self.execution_role)
        for made in self.secrets.values():
            made.grant_read(self.execution_role)

        def task_role(name: str, description: str) -> iam.Role:
            return iam.Role(self, name, assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                            description=description)

        roles = {
            "webserver": task_role("WebserverRole", "Dagster webserver: read compute logs, stop runs"),
            "daemon": task_role("DaemonRole", "Dagster daemon: launch run tasks (EcsRunLauncher)"),
            "code": task_role("CodeLocationRole", "Code location (sensors): list and read the landing zone"),
            "ingest": task_role("IngestRunRole", "Ingest runs: read landing/, write raw/, quarantine/ and artifacts/"),
            "processing": task_role("ProcessingRunRole", "Processing runs: read raw/, write processed/, quarantine/ and artifacts/"),
            "model": task_role("ModelRunRole", "Model runs: read processed/, write models/ and artifacts/"),
            "migrate": task_role("MigrateRole", "Warehouse migrations: no AWS access beyond its secrets"),
        }
        self.roles = roles
        # quarantine/ holds Delta tables: a writer reads their _delta_log/ before it commits.
        self._grant_prefixes(roles["ingest"], read=[LANDING, "quarantine"], write=["raw", "quarantine", "artifacts"])
        self._grant_prefixes(roles["processing"], read=["raw", "processed", "quarantine"],
                             write=["processed", "quarantine", "artifacts"],
                             delete=["processed", "quarantine", "artifacts"])
        self._grant_prefixes(roles["model"], read=["processed", "models"], write=["models", "artifacts"],
                             delete=["models"])
        self._grant_prefixes(roles["code"], read=[LANDING], write=[])
        self._grant_prefixes(roles["webserver"], read=[COMPUTE_LOG_PREFIX], write=[])
        self._grant_prefixes(roles["daemon"], read=[COMPUTE_LOG_PREFIX], write=[COMPUTE_LOG_PREFIX])

        # ---- task definitions ------------------------------------------------------------------
        image = ecs.ContainerImage.from_ecr_repository(self.repository, image_tag)
        common_env = {
            "DAGSTER_PG_HOST": context("wealth:dagsterPgHost") or "",
            "DAGSTER_PG_PORT": str(context("wealth:dagsterPgPort") or "5432"),
            "DAGSTER_PG_DB": context("wealth:dagsterPgDb") or "dagster",
            "DAGSTER_PG_USER": context("wealth:dagsterPgUser") or "dagster",
            "WEALTH_DAGSTER_RUN_LAUNCHER": "ecs",
            # Batched event writes for webserver, daemon, code location and run tasks (README, Performance).
            "DAGSTER_EVENT_BATCH_SIZE": "10000",
            "WEALTH_COMPUTE_LOG_BUCKET": self.bucket.bucket_name,
            "WEALTH_COMPUTE_LOG_PREFIX": COMPUTE_LOG_PREFIX,
            "WEALTH_S3_REGION": cdk.Aws.REGION,
            "WEALTH_CODE_LOCATION_HOST": code_location_host,
        }
        code_env = {
            **common_env,
            "WEALTH_LAKEHOUSE_URI": f"s3://{self.bucket.bucket_name}",
            "WEALTH_LANDING_URI": f"s3://{self.bucket.bucket_name}/{LANDING}",
            "WEALTH_PROVIDER": context("wealth:provider") or "synthetic",
            # Sessions per backfill run, each its own ECS task (0: one run per range).
            "WEALTH_BACKFILL_CHUNK_SESSIONS": str(context("wealth:backfillChunkSessions") or "0"),
        }
        instance_secrets = {"DAGSTER_PG_PASSWORD": self.secrets["DAGSTER_PG_PASSWORD"]}
        # dbt creates the marts' relations, so it connects as the migration owner; the assets as wealth_loader.
        code_secrets = {**instance_secrets, "WEALTH_DATABASE_URL": self.secrets["WEALTH_DATABASE_URL"],
                        "WEALTH_DBT_DATABASE_URL": self.secrets["WEALTH_ADMIN_DATABASE_URL"]}

        self.run_task = self._task("Run", "run", roles["processing"], RUN_CONTAINER, image, code_env, code_secrets,
                                   command=None, cpu=1024, memory=4096)
        common_env["WEALTH_ECS_RUN_TASK_DEFINITION"] = self.run_task.task_definition_arn
        self.code_task = self._task(
            "CodeLocation", "code-location", roles["code"], "code-location", image,
            {**code_env, "WEALTH_ECS_RUN_TASK_DEFINITION": self.run_task.task_definition_arn}, code_secrets,
            command=["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", str(GRPC_PORT), "-m", "wealth_pipeline.definitions"],
            port=GRPC_PORT, health=["CMD", "dagster", "api", "grpc-health-check", "-p", str(GRPC_PORT)])
        self.webserver_task = self._task(
            "Webserver", "webserver", roles["webserver"], "webserver", image, common_env, instance_secrets,
            command=["dagster-webserver", "-h", "0.0.0.0", "-p", str(WEBSERVER_PORT), "-w", "/opt/dagster/workspace.yaml"],
            port=WEBSERVER_PORT,
            health=["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen("
                    f"'http://127.0.0.1:{WEBSERVER_PORT}/server_info', timeout=5)"])
        self.daemon_task = self._task(
            "Daemon", "daemon", roles["daemon"], "daemon", image, common_env, instance_secrets,
            command=["dagster-daemon", "run", "-w", "/opt/dagster/workspace.yaml"],
            health=["CMD", "dagster-daemon", "liveness-check"])
        self.migrate_task = self._task(
            "Migrate", "migrate", roles["migrate"], "migrate", image, code_env,
            {"WEALTH_DATABASE_URL": self.secrets["WEALTH_ADMIN_DATABASE_URL"],
             "WEALTH_LOADER_PASSWORD": self.secrets["WEALTH_LOADER_PASSWORD"],
             "WEALTH_BI_PASSWORD": self.secrets["WEALTH_BI_PASSWORD"]},
            command=["sh", "-ec", "wealth-pipeline db upgrade && python -c \"import os; "
                     "from wealth_pipeline.warehouse.roles import ensure_login_roles as e; "
                     "print('login passwords set:', e(os.environ['WEALTH_DATABASE_URL']))\""])

        self._grant_run_launching(roles, cluster_arn=self.cluster.cluster_arn)

        # ---- services --------------------------------------------------------------------------
        self.security_group = ec2.SecurityGroup(self, "TasksSecurityGroup", vpc=self.vpc,
                                                description="wealth_pipeline tasks (Dagster and runs)",
                                                allow_all_outbound=True)
        self.security_group.add_ingress_rule(self.security_group, ec2.Port.tcp(GRPC_PORT),
                                             "runs, webserver and daemon reach the code location's gRPC server")
        for name, task in (("CodeLocation", self.code_task), ("Webserver", self.webserver_task),
                           ("Daemon", self.daemon_task)):
            service = ecs.FargateService(
                self, f"{name}Service", cluster=self.cluster, task_definition=task, desired_count=1,
                security_groups=[self.security_group], assign_public_ip=False,
                vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
                cloud_map_options=ecs.CloudMapOptions(name="code-location", cloud_map_namespace=namespace)
                if name == "CodeLocation" else None,
            )
            if name == "Daemon":
                service.node.add_dependency(self.run_task)

        cdk.CfnOutput(self, "DataBucketName", value=self.bucket.bucket_name)
        cdk.CfnOutput(self, "RepositoryUri", value=self.repository.repository_uri)
        cdk.CfnOutput(self, "RunTaskDefinition", value=self.run_task.task_definition_arn)
        for tier in ("ingest", "model"):
            cdk.CfnOutput(self, f"{tier.capitalize()}RunRoleArn", value=roles[tier].role_arn,
                          description=f'tag jobs with ecs/task_overrides={{"taskRoleArn": "<this>"}} to run as {tier}')

    # ---- helpers ---------------------------------------------------------------------------------
    def _grant_prefixes(self, role: iam.Role, *, read: list[str], write: list[str],
                        delete: list[str] | None = None) -> None:
        """Object access under key prefixes only; listing only those prefixes; KMS through S3 only."""
        listed = sorted(set(read) | set(write))
        role.add_to_policy(iam.PolicyStatement(
            sid="ListOwnPrefixes", actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{p}/*" for p in listed] + [f"{p}/" for p in listed]}},
        ))
        if read:
            role.add_to_policy(iam.PolicyStatement(
                sid="ReadPrefixes", actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(f"{p}/*") for p in read]))
        if write:
            role.add_to_policy(iam.PolicyStatement(
                sid="WritePrefixes", actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[self.bucket.arn_for_objects(f"{p}/*") for p in write]))
        if delete:
            role.add_to_policy(iam.PolicyStatement(
                sid="DeleteRewritablePrefixes", actions=["s3:DeleteObject"],
                resources=[self.bucket.arn_for_objects(f"{p}/*") for p in delete]))
        actions = ["kms:Decrypt"] + (["kms:GenerateDataKey"] if write else [])
        role.add_to_policy(iam.PolicyStatement(
            sid="KeyThroughS3", actions=actions, resources=[self.key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{cdk.Aws.REGION}.amazonaws.com"}}))

    def _task(self, construct_id: str, family: str, role: iam.Role, container: str, image: ecs.ContainerImage,
              environment: dict[str, str], secrets: dict[str, secretsmanager.Secret], *, command: list[str] | None,
              port: int | None = None, health: list[str] | None = None, cpu: int = 512,
              memory: int = 1024) -> ecs.FargateTaskDefinition:
        task = ecs.FargateTaskDefinition(
            self, f"{construct_id}Task", family=f"wealth-{self.env_name}-{family}", cpu=cpu, memory_limit_mib=memory,
            task_role=role, execution_role=self.execution_role,
        )
        task.add_container(
            container, container_name=container, image=image, command=command,
            environment=dict(environment),
            secrets={name: ecs.Secret.from_secrets_manager(value) for name, value in secrets.items()},
            logging=ecs.LogDrivers.aws_logs(stream_prefix=family, log_group=self.log_group),
            port_mappings=[ecs.PortMapping(container_port=port)] if port else None,
            health_check=ecs.HealthCheck(command=health, interval=cdk.Duration.seconds(30),
                                         timeout=cdk.Duration.seconds(10), retries=3,
                                         start_period=cdk.Duration.seconds(120)) if health else None,
            readonly_root_filesystem=False,
        )
        return task

    def _grant_run_launching(self, roles: dict[str, iam.Role], *, cluster_arn: str) -> None:
        """The daemon runs the `run` task definition only and passes only the run roles to it."""
        run_family = f"arn:{cdk.Aws.PARTITION}:ecs:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:task-definition/" \
                     f"wealth-{self.env_name}-run:*"
        tasks_in_cluster = f"arn:{cdk.Aws.PARTITION}:ecs:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:task/" \
                           f"wealth-{self.env_name}/*"
        daemon = roles["daemon"]
        daemon.add_to_policy(iam.PolicyStatement(
            sid="RunTheRunTaskDefinition", actions=["ecs:RunTask"], resources=[run_family],
            conditions={"ArnEquals": {"ecs:cluster": cluster_arn}}))
        daemon.add_to_policy(iam.PolicyStatement(
            sid="PassOnlyRunRoles", actions=["iam:PassRole"],
            resources=[roles[r].role_arn for r in ("ingest", "processing", "model")] + [self.execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}))
        for principal in (daemon, roles["webserver"]):
            principal.add_to_policy(iam.PolicyStatement(
                sid="WatchAndStopRuns", actions=["ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource"],
                resources=[tasks_in_cluster], conditions={"ArnEquals": {"ecs:cluster": cluster_arn}}))
            principal.add_to_policy(iam.PolicyStatement(
                sid="ReadRunLogs", actions=["logs:GetLogEvents"],
                resources=[f"{self.log_group.log_group_arn}:log-stream:*"]))
        # These APIs have no resource-level permissions (AWS service authorization reference).
        daemon.add_to_policy(iam.PolicyStatement(
            sid="DescribeWithoutResourceScope",
            actions=["ecs:DescribeTaskDefinition", "ec2:DescribeNetworkInterfaces"], resources=["*"]))
