package dns_test

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
)

type types53Change = types.Change

func change(action, name, typ, value string) types.Change {
	return types.Change{Action: types.ChangeAction(action), ResourceRecordSet: &types.ResourceRecordSet{
		Name: aws.String(name), Type: types.RRType(typ), TTL: aws.Int64(60),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(value)}}}}
}

func input(zone string, changes []types.Change) *route53.ChangeResourceRecordSetsInput {
	return &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone), ChangeBatch: &types.ChangeBatch{Changes: changes}}
}
