//! The `cairn.v1.Tokens` gRPC service: API tokens kept by the cluster.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::api::auth::token_hash;
use crate::api::error::ApiError;
use crate::proto::v1::{self, tokens_server::Tokens};
use crate::raft::Node;
use crate::state::auth::{self, AuthCommand, AuthResponse};
use crate::state::{ClientCommand, Command, Response as StateResponse};

pub struct TokensService {
    node: Arc<Node>,
}

impl TokensService {
    pub fn new(node: Arc<Node>) -> Self {
        TokensService { node }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Tokens for TokensService {
    async fn create(
        &self,
        request: Request<v1::CreateTokenRequest>,
    ) -> Reply<v1::CreateTokenReply> {
        let r = request.into_inner();
        let token = format!("cairn_{}", hex::encode(rand::random::<[u8; 24]>()));
        let command = ClientCommand {
            session: convert::session(r.session),
            command: Command::Auth(AuthCommand::CreateToken {
                name: r.name,
                token_hash: token_hash(&token),
            }),
        };
        let (outcome, log_index) = self.node.write(command).await.map_err(ApiError::from)?;
        match outcome.map_err(ApiError::from)? {
            StateResponse::Auth(AuthResponse::TokenCreated { id }) => {
                Ok(Response::new(v1::CreateTokenReply {
                    id,
                    token,
                    log_index,
                }))
            }
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}")).into()),
        }
    }

    async fn list(&self, _request: Request<v1::ListTokensRequest>) -> Reply<v1::ListTokensReply> {
        let tokens = auth::tokens(self.node.store.tree())
            .map_err(ApiError::from)?
            .into_iter()
            .map(|(id, record)| v1::TokenInfo {
                id,
                name: record.name,
                created_ms: record.created_ms,
            })
            .collect();
        Ok(Response::new(v1::ListTokensReply { tokens }))
    }

    async fn revoke(&self, request: Request<v1::RevokeTokenRequest>) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let command = ClientCommand {
            session: convert::session(r.session),
            command: Command::Auth(AuthCommand::RevokeToken { id: r.id }),
        };
        let (outcome, log_index) = self.node.write(command).await.map_err(ApiError::from)?;
        let existed = matches!(
            outcome.map_err(ApiError::from)?,
            StateResponse::Auth(AuthResponse::TokenRevoked { existed: true })
        );
        Ok(Response::new(v1::WriteReply {
            version: 0,
            existed,
            log_index,
        }))
    }
}
