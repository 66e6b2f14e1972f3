// Original file: cri-proto/api.proto


export interface CheckpointPodResponse {
}

export interface CheckpointPodResponse__Output {
}
