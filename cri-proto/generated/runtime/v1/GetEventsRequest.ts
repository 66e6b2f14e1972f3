// Original file: cri-proto/api.proto


export interface GetEventsRequest {
}

export interface GetEventsRequest__Output {
}
